-- Atomically take up to max_jobs of the best jobs a worker can run (lifecycle: claim).
-- The caller passes the queues of the classes the worker can run (matching is done in Python,
-- hub/matching.py); this script only picks heads: lowest priority band first, then classes of
-- the worker's preferred job types, then the lowest score (oldest).  A worker that restricts
-- customers looks at most 100 jobs deep per class for one of its customers.
-- KEYS: 1 claim deadlines (zset), 2 counts, 3 worker's jobs (set), 4 classes version, 5.. class queues
-- ARGV: 1 worker id, 2 now ms, 3 claim timeout ms, 4 max jobs, 5 key prefix,
--       6 allowed customers (json array) or '', 7.. preferred flag (1/0) per class queue
-- Returns: {classes_version, n, then per job: id, routing (6), payload, requirements, retry_count,
--           max_retries}
local BAND = 1099511627776
local nclasses = #KEYS - 4
local allowed = nil
if ARGV[6] ~= '' then
  allowed = {}
  for _, c in ipairs(cjson.decode(ARGV[6])) do allowed[c] = true end
end
local now = tonumber(ARGV[2])
local deadline = now + tonumber(ARGV[3])
local out = {tonumber(redis.call('GET', KEYS[4]) or '0'), 0}
for _ = 1, tonumber(ARGV[4]) do
  local best_key, best_id, best_score, best_band, best_pref = nil, nil, nil, nil, nil
  for i = 1, nclasses do
    local key = KEYS[4 + i]
    local id, score = nil, nil
    if allowed == nil then
      local head = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
      id, score = head[1], head[2]
    else
      local items = redis.call('ZRANGE', key, 0, 99, 'WITHSCORES')
      for j = 1, #items, 2 do
        local customer = redis.call('HGET', ARGV[5] .. ':job:' .. items[j], 'customer_id')
        if customer and allowed[customer] then id, score = items[j], items[j + 1]; break end
      end
    end
    if id then
      score = tonumber(score)
      local band = math.floor(score / BAND)
      local pref = tonumber(ARGV[6 + i])
      if best_id == nil or band < best_band
          or (band == best_band and (pref > best_pref or (pref == best_pref and score < best_score))) then
        best_key, best_id, best_score, best_band, best_pref = key, id, score, band, pref
      end
    end
  end
  if best_id == nil then break end
  local job = ARGV[5] .. ':job:' .. best_id
  redis.call('ZREM', best_key, best_id)
  redis.call('ZREM', ARGV[5] .. ':queued', best_id)
  redis.call('HSET', job, 'status', TO.claim, 'worker_id', ARGV[1], 'assigned_at', now,
             'claim_deadline', deadline)
  redis.call('ZADD', KEYS[1], deadline, best_id)
  redis.call('SADD', KEYS[3], best_id)
  count(KEYS[2], 'queued', TO.claim)
  table.insert(out, best_id)
  extend(out, routing(job))
  local f = redis.call('HMGET', job, 'payload', 'requirements', 'retry_count', 'max_retries')
  for k = 1, 4 do table.insert(out, f[k] or '') end
  out[2] = out[2] + 1
end
return out
