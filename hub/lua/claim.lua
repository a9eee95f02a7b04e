-- Atomically take up to max_jobs of the best jobs a worker can run (lifecycle: claim).
-- The caller passes the queues the worker may take from (matching is done in Python,
-- hub/matching.py): the queues of the classes it can run, or, for a worker bound to customers,
-- the (class, customer) queues of those classes and customers. This script only picks heads:
-- lowest priority band first, then queues of the worker's preferred job types, then the lowest
-- score (oldest); a job it takes leaves every queue it was in (dequeue).
-- KEYS: 1 claim deadlines (zset), 2 counts, 3 worker's jobs (set), 4 classes version, 5.. queues
-- ARGV: 1 worker id, 2 now ms, 3 claim timeout ms, 4 max jobs, 5 key prefix,
--       6.. preferred flag (1/0) per queue
-- Returns: {classes_version, n, then per job: id, routing (6), payload, requirements, retry_count,
--           max_retries}
local BAND = 1099511627776
local nqueues = #KEYS - 4
local prefix = ARGV[5]
local now = tonumber(ARGV[2])
local deadline = now + tonumber(ARGV[3])
local out = {tonumber(redis.call('GET', KEYS[4]) or '0'), 0}
for _ = 1, tonumber(ARGV[4]) do
  local best_id, best_score, best_band, best_pref = nil, nil, nil, nil
  for i = 1, nqueues do
    local head = redis.call('ZRANGE', KEYS[4 + i], 0, 0, 'WITHSCORES')
    if head[1] then
      local score = tonumber(head[2])
      local band = math.floor(score / BAND)
      local pref = tonumber(ARGV[5 + i])
      if best_id == nil or band < best_band
          or (band == best_band and (pref > best_pref or (pref == best_pref and score < best_score))) then
        best_id, best_score, best_band, best_pref = head[1], score, band, pref
      end
    end
  end
  if best_id == nil then break end
  local job = prefix .. ':job:' .. best_id
  -- routing (1-6: its customer, 3, and class, 6, say which queues it leaves), then what the
  -- worker gets (7-10)
  local f = redis.call('HMGET', job, 'origin', 'client_id', 'customer_id', 'job_type', 'priority', 'class',
                       'payload', 'requirements', 'retry_count', 'max_retries', 'webhook_events')
  dequeue(prefix, f[6], f[3], best_id)
  redis.call('HSET', job, 'status', TO.claim, 'worker_id', ARGV[1], 'assigned_at', now,
             'claim_deadline', deadline)
  redis.call('ZADD', KEYS[1], deadline, best_id)
  redis.call('SADD', KEYS[3], best_id)
  count(KEYS[2], 'queued', TO.claim)
  if f[11] then
    webhook(job, best_id, 'assigned', now, {'previous', 'queued', 'worker_id', ARGV[1]}, f[11])
  end
  record(prefix, best_id, 'claim', TO.claim, now, ARGV[1])
  table.insert(out, best_id)
  for k = 1, 10 do table.insert(out, f[k] or '') end
  out[2] = out[2] + 1
end
return out
