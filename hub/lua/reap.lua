-- Workers whose last sign of life is older than the deadline are gone: take them off the live
-- list and return their ids.  ZREM makes each one returned to exactly one hub, which then
-- releases its jobs (release.lua, counting a retry) and only then deletes the worker's entry:
-- until its jobs are back, the id stays its token's (D19).
-- KEYS: 1 workers (zset: worker id -> last seen ms)
-- ARGV: 1 deadline ms (last seen at or before it = gone), 2 key prefix, 3 limit
-- Returns: list of worker ids
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(gone) do
  redis.call('ZREM', KEYS[1], id)
end
return gone
