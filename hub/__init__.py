"""The empq hub: WebSocket endpoint, protocol core and Redis store.

Modules, in the order a request flows through them:
``server`` (asyncio + websockets: sockets only) → ``session`` (sans-I/O: parse, validate, role
and state checks) → ``core`` (command table: one handler per message type, returns effects) →
``store`` (Redis: Lua scripts, batched) .  ``matching`` holds the job-class and matching rules,
``config`` the settings, ``embedded_redis`` the redis-server the hub starts when given no URL.
"""
