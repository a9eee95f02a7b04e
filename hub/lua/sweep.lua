-- Timers kept in Redis (so any hub can fire them): claims not accepted in time go back to their
-- queue at their original place; retries whose delay has passed become claimable (same score);
-- jobs running past their time limit end in 'timeout'.
-- Also trims the completion and failure logs to the last hour.
-- KEYS: 1 claim deadlines, 2 run deadlines, 3 delayed, 4 counts, 5 completions log, 6 failures log,
--       7 finished jobs (zset: job id -> final at)
-- ARGV: 1 now ms, 2 key prefix, 3 limit per timer kind
-- Returns: flat records of 10: event ('claim_expired'|'retry_ready'|'time_limit'), job id, worker id,
--          previous status, routing (6)
local now, prefix, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
local function emit(event, id, worker, previous, job)
  extend(out, {event, id, worker, previous})
  extend(out, routing(job))
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', KEYS[1], id)
  local job = prefix .. ':job:' .. id
  local s = redis.call('HMGET', job, 'status', 'worker_id', 'score', 'class', 'customer_id')
  if may('claim_expired', s[1]) then
    redis.call('HSET', job, 'status', TO.claim_expired, 'worker_id', '')
    enqueue(prefix, s[4], s[5], s[3], id)
    redis.call('SREM', prefix .. ':wjobs:' .. s[2], id)
    count(KEYS[4], s[1], TO.claim_expired)
    record(prefix, id, 'claim_expired', TO.claim_expired, now, s[2])
    emit('claim_expired', id, s[2], s[1], job)
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', KEYS[3], id)
  local job = prefix .. ':job:' .. id
  local s = redis.call('HMGET', job, 'status', 'score', 'class', 'customer_id')
  if s[1] == 'queued' then
    enqueue(prefix, s[3], s[4], s[2], id)
    redis.call('HDEL', job, 'retry_at')
    emit('retry_ready', id, '', s[1], job)
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', KEYS[2], id)
  local job = prefix .. ':job:' .. id
  local s = redis.call('HMGET', job, 'status', 'worker_id', 'class', 'webhook_events')
  if may('time_limit', s[1]) then
    ended(prefix, s[3])
    redis.call('HSET', job, 'status', TO.time_limit, 'completed_at', now, 'error', 'job exceeded its time limit')
    redis.call('SREM', prefix .. ':wjobs:' .. s[2], id)
    count(KEYS[4], s[1], TO.time_limit)
    redis.call('ZADD', KEYS[7], now, id)
    if s[4] then webhook(job, id, 'timeout', now, {'previous', s[1], 'worker_id', s[2]}, s[4]) end
    record(prefix, id, 'time_limit', TO.time_limit, now, s[2])
    emit('time_limit', id, s[2], s[1], job)
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', tonumber(now) - 3600000)
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', tonumber(now) - 3600000)
return out
