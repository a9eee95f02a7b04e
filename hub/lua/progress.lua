-- Progress from the worker holding a job: (assigned | accepted | in_progress) -> in_progress.
-- KEYS: 1 job hash, 2 claim deadlines, 3 counts
-- ARGV: 1 worker id, 2 now ms, 3 job id, 4 progress, 5.. extra field/value pairs (message, ...)
-- Returns: {'OK', previous status, origin, client_id, customer_id, job_type, priority, class}
--       or {'ERR', code, status}
local s = redis.call('HMGET', KEYS[1], 'status', 'worker_id', 'started_at')
if not s[1] then return {'ERR', 'JOB_NOT_FOUND', ''} end
if s[2] ~= ARGV[1] then return {'ERR', 'NOT_JOB_HOLDER', s[1]} end
local prev = s[1]
if prev ~= 'assigned' and prev ~= 'accepted' and prev ~= 'in_progress' then
  return {'ERR', 'INVALID_STATE', prev}
end
redis.call('HSET', KEYS[1], 'status', 'in_progress', 'progress', ARGV[4], unpack(ARGV, 5))
if prev ~= 'in_progress' then
  if prev == 'assigned' then redis.call('ZREM', KEYS[2], ARGV[3]) end
  if not s[3] then redis.call('HSET', KEYS[1], 'started_at', ARGV[2]) end
  redis.call('HINCRBY', KEYS[3], prev, -1)
  redis.call('HINCRBY', KEYS[3], 'in_progress', 1)
end
local r = redis.call('HMGET', KEYS[1], 'origin', 'client_id', 'customer_id', 'job_type', 'priority', 'class')
return {'OK', prev, r[1] or '', r[2] or '', r[3] or '', r[4] or '', r[5] or '', r[6] or ''}
