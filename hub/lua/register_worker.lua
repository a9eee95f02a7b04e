-- Register a worker id in the shared registry, bound to the token that registered it first.
-- A worker id is owned by the token (a digest of it) that registered it while the registration
-- lives: connected, within its reconnect grace, or holding jobs. Another token gets DENIED, so a
-- peer that learnt a worker id (job clients see them in job_update) cannot take its jobs over.
-- Open dev mode registers with owner '' and binds nothing.
-- KEYS: 1 the worker's hash, 2 workers (zset: id -> last seen ms), 3 the worker's jobs (set)
-- ARGV: 1 worker id, 2 owner ('' = none), 3 hub id, 4 capabilities JSON, 5 now ms
-- Returns: {'OK', held job ids...} or {'DENIED'}
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= '' and owner ~= ARGV[2] then
  return {'DENIED'}
end
redis.call('HSET', KEYS[1], 'hub', ARGV[3], 'capabilities', ARGV[4], 'registered_at', ARGV[5],
           'owner', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
local out = {'OK'}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do table.insert(out, id) end
return out
