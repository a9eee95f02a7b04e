-- Forget job classes with no live job (every job of theirs is final): their registry entry goes,
-- so claims stop looking at their queues; the version bump makes every hub reload the registry.
-- A later submission of that class registers it again (submit.lua's HSETNX).
-- KEYS: 1 classes (hash), 2 live jobs per class (hash), 3 idle classes (set), 4 classes version
-- ARGV: 1 key prefix, 2 limit
-- Returns: number of classes forgotten
local gone = 0
for _, class in ipairs(redis.call('SRANDMEMBER', KEYS[3], tonumber(ARGV[2]))) do
  redis.call('SREM', KEYS[3], class)
  if tonumber(redis.call('HGET', KEYS[2], class) or '0') <= 0 then
    redis.call('HDEL', KEYS[1], class)
    redis.call('HDEL', KEYS[2], class)
    gone = gone + 1
  end
end
if gone > 0 then redis.call('INCR', KEYS[4]) end
return gone
