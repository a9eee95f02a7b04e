-- Queue a new job.  Score = (100 - priority) * 2^40 + seq: lower is better, so a class's sorted
-- set is ordered by priority (high first) then submission order (FIFO).  Exact in a double.
-- KEYS: 1 job hash, 2 class queue (zset), 3 classes (hash id -> json), 4 classes version,
--       5 sequence counter, 6 counts by status (hash)
-- ARGV: 1 class id, 2 class json, 3 priority, 4 key prefix, 5 job id, 6.. job hash field/value pairs
-- Returns: {seq, position, classes_version}
local seq = redis.call('INCR', KEYS[5])
local score = (100 - tonumber(ARGV[3])) * 1099511627776 + seq
redis.call('HSET', KEYS[1], 'status', 'queued', 'score', score, 'class', ARGV[1], unpack(ARGV, 6))
redis.call('ZADD', KEYS[2], score, ARGV[5])
redis.call('ZADD', ARGV[4] .. ':queued', score, ARGV[5])
redis.call('ZADD', ARGV[4] .. ':jobs', seq, ARGV[5])  -- every job, by submission (HTTP listing)
if redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[2]) == 1 then
  redis.call('INCR', KEYS[4])
end
redis.call('HINCRBY', KEYS[6], 'queued', 1)
-- 1-based position among every claimable job, of any class, that would be served first
-- (the global index P:queued holds every job of every class queue, with the same score)
local position = 1 + redis.call('ZCOUNT', ARGV[4] .. ':queued', '-inf', '(' .. score)
return {seq, position, tonumber(redis.call('GET', KEYS[4]) or '0')}
