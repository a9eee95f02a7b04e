"""The fleet in Redis: every hub's workers and the hubs themselves (stats and liveness across
hubs, spec D16). A worker's entry: its capabilities, the hub it is connected to, its telemetry as
of its last heartbeat, its owner (the token that registered it, D19); ``P:workers`` keeps when each
was last seen, and the reaper takes those silent past the heartbeat timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from empq.hub.redis_batch import RedisBatch
from empq.hub.store import now_ms, pairs


class FleetStore:
    def __init__(self, batch: RedisBatch, prefix: str) -> None:
        self.batch = batch
        self.p = prefix
        self._parsed_capabilities: dict[str, dict[str, Any]] = {}  # capabilities JSON -> parsed

    def key(self, name: str) -> str:
        return f"{self.p}:{name}"

    def worker_jobs_key(self, worker_id: str) -> str:
        return f"{self.p}:wjobs:{worker_id}"

    async def live_workers(self) -> int:
        return int(await self.batch.command("ZCARD", self.key("workers")))

    def worker_key(self, worker_id: str) -> str:
        return f"{self.p}:worker:{worker_id}"

    async def may_register(self, worker_id: str, owner: str) -> bool:
        """Is the id free, or this owner's? (``register_worker`` checks again as it writes.)"""
        current = await self.batch.command("HGET", self.worker_key(worker_id), "owner")
        return not current or current == owner

    async def register_worker(
        self, worker_id: str, owner: str, hub_id: str, capabilities: dict[str, Any]
    ) -> list[str] | None:
        """Record the worker in the shared registry; the jobs it still holds (resumed after a
        reconnect), or None when its id is registered by another token (``owner``)."""
        r = await self.batch.script(
            "register_worker",
            [self.worker_key(worker_id), self.key("workers"), self.worker_jobs_key(worker_id)],
            [worker_id, owner, hub_id, orjson.dumps(capabilities), now_ms()],
        )
        return sorted(r[1:]) if r[0] == "OK" else None

    async def worker_seen(self, worker_id: str, at_ms: int, telemetry: dict[str, Any] | None = None) -> None:
        """A sign of life (or, with a past ``at_ms``, a deadline: a dropped connection's grace)."""
        calls = [self.batch.command("ZADD", self.key("workers"), at_ms, worker_id)]
        if telemetry:
            calls.append(
                self.batch.command("HSET", self.worker_key(worker_id), "telemetry", orjson.dumps(telemetry))
            )
        await asyncio.gather(*calls)

    async def capabilities_changed(self, worker_id: str, capabilities: dict[str, Any]) -> None:
        """A worker declared new capabilities (worker_status): every hub matches on them."""
        await self.batch.command(
            "HSET", self.worker_key(worker_id), "capabilities", orjson.dumps(capabilities)
        )

    async def worker_gone(self, worker_id: str) -> None:
        await asyncio.gather(
            self.batch.command("ZREM", self.key("workers"), worker_id),
            self.batch.command("DEL", self.worker_key(worker_id)),
        )

    async def reap_workers(self, deadline_ms: int, limit: int = 100) -> list[str]:
        """Workers last seen at or before ``deadline_ms``, removed from the registry (each to one hub)."""
        return list(await self.batch.script("reap", [self.key("workers")], [deadline_ms, self.p, limit]))

    async def workers(self) -> dict[str, dict[str, Any]]:
        """Every registered worker (all hubs): capabilities, hub, telemetry, last_seen."""
        seen = pairs(await self.batch.command("ZRANGE", self.key("workers"), 0, -1, "WITHSCORES"))
        if not seen:
            return {}
        rows = await asyncio.gather(*(self.batch.command("HGETALL", self.worker_key(w)) for w, _ in seen))
        out: dict[str, dict[str, Any]] = {}
        for (worker_id, last_seen), row in zip(seen, rows, strict=True):
            fields = dict(pairs(row))
            out[worker_id] = {
                "hub": fields.get("hub"),
                "capabilities": orjson.loads(fields["capabilities"]) if "capabilities" in fields else {},
                "telemetry": orjson.loads(fields["telemetry"]) if "telemetry" in fields else {},
                "last_seen": int(float(last_seen)),
            }
        return out

    async def worker_capabilities(self) -> dict[str, dict[str, Any]]:
        """Every registered worker (all hubs) with only its capabilities, in one round trip and one
        reply (``workers`` costs a command, a future and a JSON parse per worker: with 10,000
        workers, done every second, that stalled the event loop for hundreds of ms). Identical
        capability documents are parsed once."""
        flat = await self.batch.script("capabilities", [self.key("workers")], [self.p])
        parsed = self._parsed_capabilities
        out: dict[str, dict[str, Any]] = {}
        for worker_id, raw in pairs(flat):
            capabilities = parsed.get(raw)
            if capabilities is None:
                capabilities = parsed[raw] = orjson.loads(raw) if raw else {}
            out[worker_id] = {"capabilities": capabilities}
        if len(parsed) > 2 * len(out) + 100:  # forget documents no worker has any more
            self._parsed_capabilities = {}
        return out

    async def record_service_request(self, frame: bytes, keep: int = 1000) -> None:
        """Keep the last ``keep`` service_request messages (telemetry)."""
        key = self.key("service_requests")
        await asyncio.gather(
            self.batch.command("LPUSH", key, frame), self.batch.command("LTRIM", key, 0, keep - 1)
        )

    async def hub_alive(self, hub_id: str, info: dict[str, Any]) -> None:
        await self.batch.command("HSET", self.key("hubs"), hub_id, orjson.dumps({**info, "seen": now_ms()}))

    async def hubs(self, within_ms: int) -> dict[str, dict[str, Any]]:
        """Hubs that reported within ``within_ms`` (older entries are dropped)."""
        now = now_ms()
        alive, stale = {}, []
        for hub_id, raw in pairs(await self.batch.command("HGETALL", self.key("hubs"))):
            info = orjson.loads(raw)
            if now - info["seen"] <= within_ms:
                alive[hub_id] = info
            else:
                stale.append(hub_id)
        if stale:
            await self.batch.command("HDEL", self.key("hubs"), *stale)
        return alive

    async def hub_gone(self, hub_id: str) -> None:
        await self.batch.command("HDEL", self.key("hubs"), hub_id)
