-- Cancel a job that is not final, wherever it is: class queue, delayed, claimed, running
-- (lifecycle: cancel).
-- KEYS: 1 job hash, 2 claim deadlines, 3 run deadlines, 4 counts, 5 delayed, 6 finished jobs
-- ARGV: 1 now ms, 2 job id, 3 key prefix, 4 reason
-- Returns: moved(previous, {worker id that held it or ''}) or {'ERR', code, status}
local s = redis.call('HMGET', KEYS[1], 'status', 'worker_id', 'class', 'customer_id', 'webhook_events')
if not s[1] then return {'ERR', 'JOB_NOT_FOUND', ''} end
local prev = s[1]
if not may('cancel', prev) then return {'ERR', 'INVALID_STATE', prev} end
local worker = s[2] or ''
dequeue(ARGV[3], s[3], s[4], ARGV[2])
redis.call('ZREM', KEYS[5], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
if worker ~= '' then redis.call('SREM', ARGV[3] .. ':wjobs:' .. worker, ARGV[2]) end
redis.call('HSET', KEYS[1], 'status', TO.cancel, 'cancelled_at', ARGV[1], 'completed_at', ARGV[1],
           'cancel_reason', ARGV[4], 'worker_id', '')
count(KEYS[4], prev, TO.cancel)
redis.call('ZADD', KEYS[6], ARGV[1], ARGV[2])
ended(ARGV[3], s[3])
if s[5] then
  webhook(KEYS[1], ARGV[2], 'cancelled', ARGV[1], {'previous', prev, 'worker_id', worker}, s[5])
end
record(ARGV[3], ARGV[2], 'cancel', TO.cancel, ARGV[1], worker, ARGV[4])
return moved(KEYS[1], prev, {worker})
