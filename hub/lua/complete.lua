-- The worker holding a job reports success: -> completed.
-- KEYS: 1 job hash, 2 claim deadlines, 3 run deadlines, 4 counts, 5 worker's jobs, 6 processing-time totals,
--       7 completions log (zset: job id -> completed at), 8 finished jobs (zset: job id -> final at)
-- ARGV: 1 worker id, 2 now ms, 3 job id, 4 result json, 5 processing time seconds or ''
-- Returns: {'OK', previous status, processing_time, origin, client_id, customer_id, job_type, priority, class}
--       or {'ERR', code, status}
local s = redis.call('HMGET', KEYS[1], 'status', 'worker_id', 'started_at', 'assigned_at')
if not s[1] then return {'ERR', 'JOB_NOT_FOUND', ''} end
if s[2] ~= ARGV[1] then return {'ERR', 'NOT_JOB_HOLDER', s[1]} end
local prev = s[1]
if prev ~= 'assigned' and prev ~= 'accepted' and prev ~= 'in_progress' then
  return {'ERR', 'INVALID_STATE', prev}
end
local now = tonumber(ARGV[2])
local ptime = ARGV[5]
if ptime == '' then
  ptime = tostring((now - tonumber(s[3] or s[4] or now)) / 1000)
end
redis.call('HSET', KEYS[1], 'status', 'completed', 'result', ARGV[4], 'processing_time', ptime,
           'completed_at', now, 'progress', 100)
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('SREM', KEYS[5], ARGV[3])
redis.call('HINCRBY', KEYS[4], prev, -1)
redis.call('HINCRBY', KEYS[4], 'completed', 1)
redis.call('HINCRBYFLOAT', KEYS[6], 'sum', ptime)
redis.call('HINCRBY', KEYS[6], 'count', 1)
redis.call('ZADD', KEYS[7], now, ARGV[3])
redis.call('ZADD', KEYS[8], now, ARGV[3])
local r = redis.call('HMGET', KEYS[1], 'origin', 'client_id', 'customer_id', 'job_type', 'priority', 'class')
return {'OK', prev, ptime, r[1] or '', r[2] or '', r[3] or '', r[4] or '', r[5] or '', r[6] or ''}
