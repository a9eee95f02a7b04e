-- Progress from the workers holding jobs (lifecycle: progress): the updates of one tick, any
-- number of jobs (hub/progress.py), each checked and written as if it came alone.
-- KEYS: 1 claim deadlines, 2 counts, 3.. the job hashes, one per update
-- ARGV: 1 now ms, 2 key prefix, then per update: worker id, job id, progress, n, then n values
--       (field/value pairs: message, ...)
-- Returns: per update, moved(previous) or {'ERR', code, status}
local out = {}
local a = 3
for k = 3, #KEYS do
  local job, worker, id, n = KEYS[k], ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 3])
  local prev, started, wanted = held(job, worker, 'progress', 'started_at', 'webhook_events')
  if not prev then
    out[k - 2] = started  -- not held: the second value is the refusal
  else
    local extra = {unpack(ARGV, a + 4, a + 3 + n)}
    redis.call('HSET', job, 'status', TO.progress, 'progress', ARGV[a + 2], unpack(extra))
    if prev ~= TO.progress then
      if prev == 'assigned' then redis.call('ZREM', KEYS[1], id) end
      if not started then redis.call('HSET', job, 'started_at', ARGV[1]) end
      count(KEYS[2], prev, TO.progress)
      record(ARGV[2], id, 'progress', TO.progress, ARGV[1], worker)
    end
    if wanted then
      webhook(job, id, 'progress', ARGV[1],
              extend({'previous', prev, 'worker_id', worker, 'progress', ARGV[a + 2]}, extra), wanted)
    end
    out[k - 2] = moved(job, prev)
  end
  a = a + 4 + n
end
return out
