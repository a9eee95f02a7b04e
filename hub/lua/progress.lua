-- Progress from the worker holding a job (lifecycle: progress).
-- KEYS: 1 job hash, 2 claim deadlines, 3 counts
-- ARGV: 1 worker id, 2 now ms, 3 job id, 4 progress, 5 key prefix, 6.. extra field/value pairs (message, ...)
-- Returns: moved(previous) or {'ERR', code, status}
local prev, started, wanted = held(KEYS[1], ARGV[1], 'progress', 'started_at', 'webhook_events')
if not prev then return started end  -- not held: the second value is the refusal
redis.call('HSET', KEYS[1], 'status', TO.progress, 'progress', ARGV[4], unpack(ARGV, 6))
if prev ~= TO.progress then
  if prev == 'assigned' then redis.call('ZREM', KEYS[2], ARGV[3]) end
  if not started then redis.call('HSET', KEYS[1], 'started_at', ARGV[2]) end
  count(KEYS[3], prev, TO.progress)
  record(ARGV[5], ARGV[3], 'progress', TO.progress, ARGV[2], ARGV[1])
end
if wanted then
  webhook(KEYS[1], ARGV[3], 'progress', ARGV[2],
          extend({'previous', prev, 'worker_id', ARGV[1], 'progress', ARGV[4]}, {unpack(ARGV, 6)}), wanted)
end
return moved(KEYS[1], prev)
