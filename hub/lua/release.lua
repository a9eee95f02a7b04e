-- Hand back every job a worker holds (lifecycle: release, or lost when out of retries): each
-- goes back to its queue at its original place.
-- Used for a graceful disconnect (no retry counted) and for a lost worker (counts as a retry;
-- a job out of retries then fails).
-- KEYS: 1 worker's jobs (set), 2 claim deadlines, 3 run deadlines, 4 counts, 5 failures log,
--       6 finished jobs (zset: job id -> final at)
-- ARGV: 1 worker id, 2 now ms, 3 key prefix, 4 count a retry (1/0)
-- Returns: flat records of 10: event ('release'|'lost'), job id, worker id, previous status,
--          routing (6)
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local job = ARGV[3] .. ':job:' .. id
  local s = redis.call('HMGET', job, 'status', 'worker_id', 'score', 'class', 'retry_count', 'max_retries',
                       'customer_id', 'webhook_events')
  if s[2] == ARGV[1] and may('release', s[1]) then
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
    local retries = tonumber(s[5] or '0')
    local event = 'release'
    if ARGV[4] == '1' then
      if retries < tonumber(s[6] or '0') then
        retries = retries + 1
      else
        event = 'lost'
      end
    end
    if event == 'release' then
      redis.call('HSET', job, 'status', TO.release, 'worker_id', '', 'retry_count', retries, 'progress', 0)
      enqueue(ARGV[3], s[4], s[7], s[3], id)
    else
      redis.call('HSET', job, 'status', TO.lost, 'worker_id', '', 'completed_at', ARGV[2],
                 'error', 'worker lost and no retries left')
      redis.call('ZADD', KEYS[5], ARGV[2], id)
      redis.call('ZADD', KEYS[6], ARGV[2], id)
      ended(ARGV[3], s[4])
      if s[8] then
        webhook(job, id, 'failed', ARGV[2], {'previous', s[1], 'worker_id', ARGV[1], 'cause', 'lost'}, s[8])
      end
    end
    local to = event == 'release' and TO.release or TO.lost
    count(KEYS[4], s[1], to)
    record(ARGV[3], id, event, to, ARGV[2], ARGV[1])
    extend(out, {event, id, ARGV[1], s[1]})
    extend(out, routing(job))
  end
end
redis.call('DEL', KEYS[1])
return out
