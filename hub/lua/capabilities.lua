-- Every registered worker's capabilities (all hubs) in one reply: the hub's once-a-second
-- registry refresh must stay one round trip however many workers there are.
-- KEYS: 1 workers (zset: worker id -> last seen ms)
-- ARGV: 1 key prefix
-- Returns: flat worker id, capabilities JSON ('' if none) pairs
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  table.insert(out, id)
  table.insert(out, redis.call('HGET', ARGV[1] .. ':worker:' .. id, 'capabilities') or '')
end
return out
