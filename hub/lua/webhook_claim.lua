-- Take webhook deliveries that are due (spec D21): each one this call returns is leased to the
-- caller until now + lease (its score in its target's queue becomes that deadline), so another
-- hub takes it again only if this one did not report back in time (killed, stalled). Its attempt
-- number is counted here: no two hubs ever make the same attempt.
-- Targets are taken in order of their earliest due delivery; a target at the caller's in-flight
-- bound for it is skipped, so a slow receiver's backlog cannot hold up the others.
-- KEYS: 1 targets index (zset: target -> earliest due ms)
-- ARGV: 1 now ms, 2 lease ms, 3 max deliveries, 4 key prefix, 5 bound per target, 6 targets to look at,
--       7.. target, attempts in flight to it (pairs)
-- Returns: flat, per delivery: id, attempt, number of values n, then n values (its record's field/value pairs)
local now, lease, limit, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local per_target = tonumber(ARGV[5])
local inflight = {}
for i = 7, #ARGV, 2 do inflight[ARGV[i]] = tonumber(ARGV[i + 1]) end
local out, taken = {}, 0
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))
for _, target in ipairs(due) do
  if taken >= limit then break end
  local room = math.min(per_target - (inflight[target] or 0), limit - taken)
  local queue = prefix .. ':whq:' .. target
  if room > 0 then
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', queue, '-inf', now, 'LIMIT', 0, room)) do
      local record = prefix .. ':whd:' .. id
      if redis.call('EXISTS', record) == 0 then
        redis.call('ZREM', queue, id)
      else
        local attempt = redis.call('HINCRBY', record, 'attempt', 1)
        redis.call('ZADD', queue, now + lease, id)
        local fields = redis.call('HGETALL', record)
        extend(out, {id, attempt, #fields})
        extend(out, fields)
        taken = taken + 1
      end
    end
  end
  local head = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
  if head[1] then redis.call('ZADD', KEYS[1], head[2], target) else redis.call('ZREM', KEYS[1], target) end
end
return out
