-- The worker holding a job reports failure: retry later (lifecycle: retry, then queued after a
-- delay) or fail for good (lifecycle: fail).
-- Backoff: base * 2^(n-1) ms, capped; n = retries so far including this one.
-- KEYS: 1 job hash, 2 claim deadlines, 3 run deadlines, 4 counts, 5 worker's jobs, 6 delayed (zset),
--       7 failures log (zset: job id -> failed at), 8 finished jobs (zset: job id -> final at)
-- ARGV: 1 worker id, 2 now ms, 3 job id, 4 error, 5 retry allowed (1/0), 6 base ms, 7 cap ms,
--       8 error details json or '', 9 key prefix
-- Returns: moved(previous, {outcome 'retry'|'failed', delay ms, retry_count}) or {'ERR', code, status}
local prev, retry_count, max_retries, class, wanted =
  held(KEYS[1], ARGV[1], 'fail', 'retry_count', 'max_retries', 'class', 'webhook_events')
if not prev then return retry_count end  -- not held: the second value is the refusal
local now = tonumber(ARGV[2])
local retries, max = tonumber(retry_count or '0'), tonumber(max_retries or '0')
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('SREM', KEYS[5], ARGV[3])
local outcome, delay = 'failed', 0
if ARGV[5] == '1' and retries < max then
  retries = retries + 1
  delay = math.min(tonumber(ARGV[6]) * 2 ^ (retries - 1), tonumber(ARGV[7]))
  outcome = 'retry'
  redis.call('HSET', KEYS[1], 'status', TO.retry, 'worker_id', '', 'error', ARGV[4], 'retry_count', retries,
             'retry_at', now + delay, 'progress', 0)
  redis.call('ZADD', KEYS[6], now + delay, ARGV[3])
  count(KEYS[4], prev, TO.retry)
  record(ARGV[9], ARGV[3], 'retry', TO.retry, now, ARGV[1], ARGV[4])
else
  redis.call('HSET', KEYS[1], 'status', TO.fail, 'error', ARGV[4], 'completed_at', now)
  count(KEYS[4], prev, TO.fail)
  redis.call('ZADD', KEYS[7], now, ARGV[3])
  redis.call('ZADD', KEYS[8], now, ARGV[3])
  ended(ARGV[9], class)
  record(ARGV[9], ARGV[3], 'fail', TO.fail, now, ARGV[1], ARGV[4])
end
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'error_details', ARGV[8]) end
if outcome == 'failed' then
  if wanted then
    webhook(KEYS[1], ARGV[3], 'failed', ARGV[2], {'previous', prev, 'worker_id', ARGV[1]}, wanted)
  end
end
return moved(KEYS[1], prev, {outcome, delay, retries})
