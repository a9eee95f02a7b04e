-- A worker confirms a job it was assigned: assigned -> accepted.
-- KEYS: 1 job hash, 2 claim deadlines, 3 run deadlines, 4 counts
-- ARGV: 1 worker id, 2 now ms, 3 job id
-- Returns: {'OK', previous status, origin, client_id, customer_id, job_type, priority, class}
--       or {'ERR', code, status}
local s = redis.call('HMGET', KEYS[1], 'status', 'worker_id', 'timeout_ms')
if not s[1] then return {'ERR', 'JOB_NOT_FOUND', ''} end
if s[2] ~= ARGV[1] then return {'ERR', 'NOT_JOB_HOLDER', s[1]} end
if s[1] ~= 'assigned' then return {'ERR', 'INVALID_STATE', s[1]} end
local now = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'status', 'accepted', 'started_at', now)
redis.call('ZREM', KEYS[2], ARGV[3])
if s[3] and s[3] ~= '' then redis.call('ZADD', KEYS[3], now + tonumber(s[3]), ARGV[3]) end
redis.call('HINCRBY', KEYS[4], 'assigned', -1)
redis.call('HINCRBY', KEYS[4], 'accepted', 1)
local r = redis.call('HMGET', KEYS[1], 'origin', 'client_id', 'customer_id', 'job_type', 'priority', 'class')
return {'OK', 'assigned', r[1] or '', r[2] or '', r[3] or '', r[4] or '', r[5] or '', r[6] or ''}
