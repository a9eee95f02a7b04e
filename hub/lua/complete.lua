-- The worker holding a job reports success (lifecycle: complete).
-- KEYS: 1 job hash, 2 claim deadlines, 3 run deadlines, 4 counts, 5 worker's jobs, 6 processing-time totals,
--       7 completions log (zset: job id -> completed at), 8 finished jobs (zset: job id -> final at)
-- ARGV: 1 worker id, 2 now ms, 3 job id, 4 result json, 5 processing time seconds or '', 6 key prefix
-- Returns: moved(previous, {processing time}) or {'ERR', code, status}
local prev, started, assigned, class, wanted =
  held(KEYS[1], ARGV[1], 'complete', 'started_at', 'assigned_at', 'class', 'webhook_events')
if not prev then return started end  -- not held: the second value is the refusal
local now = tonumber(ARGV[2])
local ptime = ARGV[5]
if ptime == '' then
  ptime = tostring((now - tonumber(started or assigned or now)) / 1000)
end
redis.call('HSET', KEYS[1], 'status', TO.complete, 'result', ARGV[4], 'processing_time', ptime,
           'completed_at', now, 'progress', 100)
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('SREM', KEYS[5], ARGV[3])
count(KEYS[4], prev, TO.complete)
redis.call('HINCRBYFLOAT', KEYS[6], 'sum', ptime)
redis.call('HINCRBY', KEYS[6], 'count', 1)
redis.call('ZADD', KEYS[7], now, ARGV[3])
redis.call('ZADD', KEYS[8], now, ARGV[3])
ended(ARGV[6], class)
if wanted then
  webhook(KEYS[1], ARGV[3], 'completed', ARGV[2], {'previous', prev, 'worker_id', ARGV[1]}, wanted)
end
record(ARGV[6], ARGV[3], 'complete', TO.complete, now, ARGV[1])
return moved(KEYS[1], prev, {ptime})
