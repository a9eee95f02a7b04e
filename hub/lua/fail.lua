-- The worker holding a job reports failure: retry later (back to queued, delayed) or fail for good.
-- Backoff: base * 2^(n-1) ms, capped; n = retries so far including this one.
-- KEYS: 1 job hash, 2 claim deadlines, 3 run deadlines, 4 counts, 5 worker's jobs, 6 delayed (zset),
--       7 failures log (zset: job id -> failed at), 8 finished jobs (zset: job id -> final at)
-- ARGV: 1 worker id, 2 now ms, 3 job id, 4 error, 5 retry allowed (1/0), 6 base ms, 7 cap ms,
--       8 error details json or ''
-- Returns: {'OK', previous status, outcome ('retry'|'failed'), delay ms, retry_count,
--           origin, client_id, customer_id, job_type, priority, class}  or {'ERR', code, status}
local s = redis.call('HMGET', KEYS[1], 'status', 'worker_id', 'retry_count', 'max_retries')
if not s[1] then return {'ERR', 'JOB_NOT_FOUND', ''} end
if s[2] ~= ARGV[1] then return {'ERR', 'NOT_JOB_HOLDER', s[1]} end
local prev = s[1]
if prev ~= 'assigned' and prev ~= 'accepted' and prev ~= 'in_progress' then
  return {'ERR', 'INVALID_STATE', prev}
end
local now = tonumber(ARGV[2])
local retries = tonumber(s[3] or '0')
local max = tonumber(s[4] or '0')
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('SREM', KEYS[5], ARGV[3])
redis.call('HINCRBY', KEYS[4], prev, -1)
local outcome, delay = 'failed', 0
if ARGV[5] == '1' and retries < max then
  retries = retries + 1
  delay = math.min(tonumber(ARGV[6]) * 2 ^ (retries - 1), tonumber(ARGV[7]))
  outcome = 'retry'
  redis.call('HSET', KEYS[1], 'status', 'queued', 'worker_id', '', 'error', ARGV[4], 'retry_count', retries,
             'retry_at', now + delay, 'progress', 0)
  redis.call('ZADD', KEYS[6], now + delay, ARGV[3])
  redis.call('HINCRBY', KEYS[4], 'queued', 1)
else
  redis.call('HSET', KEYS[1], 'status', 'failed', 'error', ARGV[4], 'completed_at', now)
  redis.call('HINCRBY', KEYS[4], 'failed', 1)
  redis.call('ZADD', KEYS[7], now, ARGV[3])
  redis.call('ZADD', KEYS[8], now, ARGV[3])
end
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'error_details', ARGV[8]) end
local r = redis.call('HMGET', KEYS[1], 'origin', 'client_id', 'customer_id', 'job_type', 'priority', 'class')
return {'OK', prev, outcome, delay, retries, r[1] or '', r[2] or '', r[3] or '', r[4] or '', r[5] or '', r[6] or ''}
