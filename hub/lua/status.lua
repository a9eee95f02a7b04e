-- Everything known about a job, plus its queue position while it waits in a class queue.
-- KEYS: 1 job hash, 2 classes (hash)
-- ARGV: 1 key prefix, 2 job id
-- Returns: flat field/value list of the job hash, then '__position', position (0 if not queued)
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return fields end
local s = redis.call('HMGET', KEYS[1], 'status', 'score', 'class')
local position = 0
if s[1] == 'queued' and redis.call('ZSCORE', ARGV[1] .. ':q:' .. s[3], ARGV[2]) then
  position = 1 + redis.call('ZCOUNT', ARGV[1] .. ':queued', '-inf', '(' .. s[2])
end
table.insert(fields, '__position')
table.insert(fields, position)
return fields
