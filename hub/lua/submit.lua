-- Queue a new job (lifecycle: submit).  Score = (100 - priority) * 2^40 + seq: lower is better, so a class's sorted
-- set is ordered by priority (high first) then submission order (FIFO).  Exact in a double.
-- KEYS: 1 job hash, 2 class queue (zset, see enqueue), 3 classes (hash id -> json), 4 classes version,
--       5 sequence counter, 6 counts by status (hash),
--       7 (only with an idempotency key) the key's record: "first job id:its position", expiring
-- ARGV: 1 class id, 2 class json, 3 priority, 4 key prefix, 5 job id, 6 idempotency record ttl ms,
--       7 queue bound (0 = none), 8 customer id ('' = none), 9 bound per customer (0 = none),
--       10 now ms, 11 the job this one retries ('' = none, D20), 12.. job hash field/value pairs
-- Returns: {seq, position, classes_version}, or for a key already used (D18, nothing queued):
--          {0, first position, classes_version, first job id}, or when the queue bound is
--          reached (D19, nothing queued): {-1, jobs queued}, or {-2, jobs queued} for the bound
--          per customer, or when the job to retry is gone, not in a retryable state or retried
--          already (D20, nothing queued): {-3, its status or '', the job it was retried as or ''}
if KEYS[7] then
  local prior = redis.call('GET', KEYS[7])
  if prior then
    local sep = string.find(prior, ':', 1, true)
    return {0, tonumber(string.sub(prior, sep + 1)), tonumber(redis.call('GET', KEYS[4]) or '0'),
            string.sub(prior, 1, sep - 1)}
  end
end
local bound = tonumber(ARGV[7])
if bound > 0 then
  local queued = redis.call('ZCARD', ARGV[4] .. ':queued')
  if queued >= bound then return {-1, queued} end
end
local customer = ARGV[8]
local per_customer = tonumber(ARGV[9])
if per_customer > 0 and customer ~= '' then
  local queued = tonumber(redis.call('HGET', ARGV[4] .. ':cqueued', customer) or '0')
  if queued >= per_customer then return {-2, queued} end
end
local retry_of = ARGV[11]
local original, ended_as
if retry_of ~= '' then
  original = ARGV[4] .. ':job:' .. retry_of
  local o = redis.call('HMGET', original, 'status', 'retried_as')
  ended_as = o[1]
  if not ended_as or not RETRYABLE(ended_as) or o[2] then return {-3, ended_as or '', o[2] or ''} end
end
local seq = redis.call('INCR', KEYS[5])
local score = (100 - tonumber(ARGV[3])) * 1099511627776 + seq
redis.call('HSET', KEYS[1], 'status', TO.submit, 'score', score, 'class', ARGV[1], unpack(ARGV, 12))
enqueue(ARGV[4], ARGV[1], customer, score, ARGV[5])
redis.call('ZADD', ARGV[4] .. ':jobs', seq, ARGV[5])  -- every job, by submission (HTTP listing)
if redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[2]) == 1 then
  redis.call('INCR', KEYS[4])
end
if redis.call('HINCRBY', ARGV[4] .. ':class_live', ARGV[1], 1) == 1 then
  redis.call('SREM', ARGV[4] .. ':classes_idle', ARGV[1])  -- live again: not to be forgotten
end
count(KEYS[6], nil, TO.submit)
record(ARGV[4], ARGV[5], 'submit', TO.submit, ARGV[10], '', retry_of)
if original then
  redis.call('HSET', original, 'retried_as', ARGV[5])
  record(ARGV[4], retry_of, 'retried', ended_as, ARGV[10], '', ARGV[5])
end
-- 1-based position among every claimable job, of any class, that would be served first
-- (the global index P:queued holds every job of every class queue, with the same score)
local position = 1 + redis.call('ZCOUNT', ARGV[4] .. ':queued', '-inf', '(' .. score)
if KEYS[7] then
  redis.call('SET', KEYS[7], ARGV[5] .. ':' .. position, 'PX', ARGV[6])
end
return {seq, position, tonumber(redis.call('GET', KEYS[4]) or '0')}
