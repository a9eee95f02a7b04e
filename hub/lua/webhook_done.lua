-- The outcome of a webhook attempt (spec D21): retry later, or done (delivered, failed, expired).
-- Only the holder of the attempt's lease moves the delivery: a hub that reports after its lease
-- ran out and another hub took the delivery again changes nothing but the log.
-- The attempt goes into the job's delivery log while the job exists (bounded, latest entries).
-- KEYS: 1 delivery record, 2 its target's queue, 3 targets index, 4 the job's delivery log, 5 job hash
-- ARGV: 1 delivery id, 2 attempt, 3 outcome ('retry'|'delivered'|'failed'|'expired'), 4 next attempt ms,
--       5 log entry (JSON), 6 target
-- Returns: 1 if the attempt still held the lease, else 0
local mine = redis.call('HGET', KEYS[1], 'attempt') == ARGV[2]
if mine then
  if ARGV[3] == 'retry' then
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
  else
    redis.call('ZREM', KEYS[2], ARGV[1])
    redis.call('DEL', KEYS[1])
  end
  local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if head[1] then redis.call('ZADD', KEYS[3], head[2], ARGV[6]) else redis.call('ZREM', KEYS[3], ARGV[6]) end
end
if redis.call('EXISTS', KEYS[5]) == 1 then
  redis.call('RPUSH', KEYS[4], ARGV[5])
  redis.call('LTRIM', KEYS[4], -WEBHOOK_LOG, -1)
end
if mine then return 1 end
return 0
