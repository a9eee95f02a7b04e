-- A worker confirms a job it was assigned (lifecycle: accept).
-- KEYS: 1 job hash, 2 claim deadlines, 3 run deadlines, 4 counts
-- ARGV: 1 worker id, 2 now ms, 3 job id
-- Returns: moved(previous) or {'ERR', code, status}
local prev, refused = held(KEYS[1], ARGV[1], 'accept')
if not prev then return refused end
local now = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'status', TO.accept, 'started_at', now)
redis.call('ZREM', KEYS[2], ARGV[3])
local limit = redis.call('HGET', KEYS[1], 'timeout_ms')
if limit and limit ~= '' then redis.call('ZADD', KEYS[3], now + tonumber(limit), ARGV[3]) end
count(KEYS[4], prev, TO.accept)
return moved(KEYS[1], prev)
