-- Retention: forget finished jobs whose final transition is older than the cutoff — their hash, their
-- history, their webhook log and their place in the listing index. Counts by status are totals and
-- stay as they are.
-- KEYS: 1 finished jobs (zset: job id -> final at), 2 listing index (zset: job id -> sequence)
-- ARGV: 1 cutoff ms (jobs final at or before it go), 2 limit, 3 key prefix
-- Returns: the number of jobs forgotten
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  -- the job, its history and its webhook log (its deliveries still due go on: whd: is self-contained)
  redis.call('UNLINK', ARGV[3] .. ':job:' .. id, ARGV[3] .. ':hist:' .. id, ARGV[3] .. ':whlog:' .. id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[1], id)
end
return #ids
