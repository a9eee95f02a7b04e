-- A worker confirms a job it was assigned (lifecycle: accept).
-- KEYS: 1 job hash, 2 claim deadlines, 3 run deadlines, 4 counts
-- ARGV: 1 worker id, 2 now ms, 3 job id, 4 key prefix
-- Returns: moved(previous) or {'ERR', code, status}
local prev, limit, wanted = held(KEYS[1], ARGV[1], 'accept', 'timeout_ms', 'webhook_events')
if not prev then return limit end  -- not held: the second value is the refusal
local now = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'status', TO.accept, 'started_at', now)
redis.call('ZREM', KEYS[2], ARGV[3])
if limit and limit ~= '' then redis.call('ZADD', KEYS[3], now + tonumber(limit), ARGV[3]) end
count(KEYS[4], prev, TO.accept)
if wanted then
  webhook(KEYS[1], ARGV[3], 'accepted', ARGV[2], {'previous', prev, 'worker_id', ARGV[1]}, wanted)
end
record(ARGV[4], ARGV[3], 'accept', TO.accept, now, ARGV[1])
return moved(KEYS[1], prev)
