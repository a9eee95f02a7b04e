-- Shared by the scripts (hub/redis_batch.py prepends to each the definitions it uses, after
-- may(event, status), rendered from hub/lifecycle.py: true when the event may start from
-- status; the script's TO.<event>, the state an event leads to, is rendered as that state).
-- Scripts run these definitions on every call: they allocate as little as they can.

-- Who hears about a job (hub/store.py Routing, in that order): its hash's fields (nil if unset).
local function routing_fields(job)
  return redis.call('HMGET', job, 'origin', 'client_id', 'customer_id', 'job_type', 'priority', 'class')
end

-- The same, '' for unset.
local function routing(job)
  local r = routing_fields(job)
  return {r[1] or '', r[2] or '', r[3] or '', r[4] or '', r[5] or '', r[6] or ''}
end

-- Append the values of a list to another.
local function extend(out, values)
  for _, v in ipairs(values) do table.insert(out, v) end
  return out
end

-- The reply of a job transition: {'OK', previous status, routing..., extras...}.
local function moved(job, previous, extras)
  local r = routing_fields(job)
  local out = {'OK', previous, r[1] or '', r[2] or '', r[3] or '', r[4] or '', r[5] or '', r[6] or ''}
  if extras then extend(out, extras) end
  return out
end

-- The worker holds the job and its state allows the event: returns its status (and the fields
-- asked for, read in the same call), or nil and the refusal {'ERR', code, status} (a late message
-- from a worker that lost the job changes nothing).
local function held(job, worker, event, ...)
  local s = redis.call('HMGET', job, 'status', 'worker_id', ...)
  if not s[1] then return nil, {'ERR', 'JOB_NOT_FOUND', ''} end
  if s[2] ~= worker then return nil, {'ERR', 'NOT_JOB_HOLDER', s[1]} end
  if not may(event, s[1]) then return nil, {'ERR', 'INVALID_STATE', s[1]} end
  return s[1], s[3], s[4], s[5], s[6]
end

-- One job moves between states: the counts by status follow.
local function count(counts, from, to)
  if from then redis.call('HINCRBY', counts, from, -1) end
  redis.call('HINCRBY', counts, to, 1)
end

-- Queues. A claimable job waits in its class queue (q:<class>) and in the global index
-- (queued, for positions); a job with a customer also in its (class, customer) queue
-- (q:<class>:c:<customer>), where a worker bound to customers finds their jobs at the head, and
-- counts in cqueued (claimable jobs per customer). Same score everywhere.
local function enqueue(prefix, class, customer, score, id)
  redis.call('ZADD', prefix .. ':q:' .. class, score, id)
  redis.call('ZADD', prefix .. ':queued', score, id)
  if customer and customer ~= '' then
    if redis.call('ZADD', prefix .. ':q:' .. class .. ':c:' .. customer, score, id) == 1 then
      redis.call('HINCRBY', prefix .. ':cqueued', customer, 1)
    end
  end
end

local function dequeue(prefix, class, customer, id)
  redis.call('ZREM', prefix .. ':q:' .. class, id)
  redis.call('ZREM', prefix .. ':queued', id)
  if customer and customer ~= '' then
    if redis.call('ZREM', prefix .. ':q:' .. class .. ':c:' .. customer, id) == 1 then
      redis.call('HINCRBY', prefix .. ':cqueued', customer, -1)
    end
  end
end

-- A job of this class reached a final state: a class with no live job left is forgotten by
-- gc_classes (so a flood of one-off job types does not slow every claim for good).
local function ended(prefix, class)
  if redis.call('HINCRBY', prefix .. ':class_live', class, -1) <= 0 then
    redis.call('SADD', prefix .. ':classes_idle', class)
  end
end

-- The job's history (hist:<id>, the dashboard's timeline, D20): every transition appends one
-- entry, "event TAB status it led to TAB at ms TAB worker TAB note" (ids have no control
-- characters; the note, last, is free text: the error of a failure, the reason of a cancel, the
-- job a retry links to; at most 500 bytes). One RPUSH; a job past HISTORY_MAX entries (claimed
-- and released again and again) keeps its latest ones.
local function record(prefix, id, event, status, at, worker, note)
  local HISTORY_MAX = 200
  local key = prefix .. ':hist:' .. id
  local entry = event .. '\t' .. status .. '\t' .. at .. '\t' .. (worker or '') .. '\t' .. string.sub(note or '', 1, 500)
  if redis.call('RPUSH', key, entry) > HISTORY_MAX then
    redis.call('LTRIM', key, -HISTORY_MAX, -1)
  end
end

-- Webhooks (spec D21). A job submitted with a webhook_url has webhook_url, webhook_events
-- (comma-separated) and webhook_target (scheme://host:port) in its hash. A transition script reads
-- webhook_events along with the fields it reads anyway and passes it as `wanted` (nil: no
-- webhook, nothing more is done). When the job wants the event, the delivery is queued here, in
-- the transition's atomic step: the delivery hash whd:<delivery id> (the event's facts, from which
-- hub/job_messages.py builds the message: the job's fields below, then the script's `facts`
-- pairs), its place in its target's queue whq:<target> (zset: delivery id -> due ms) and in the
-- targets' index whq (zset: target -> earliest due), and a 'queued' entry in the job's delivery
-- log whlog:<job id>. A progress delivery not attempted yet takes the newer progress instead (a
-- receiver gets the latest). The prefix is the job key's: <prefix>:job:<id>.
local WEBHOOK_LOG = 200  -- entries kept in a job's webhook log (the latest)

local function webhook(job, id, event, now, facts, wanted)
  if not wanted or not string.find(',' .. wanted .. ',', ',' .. event .. ',', 1, true) then return end
  local copy = {'job_type', 'priority', 'customer_id', 'retry_count', 'error', 'cancelled_at', 'cancel_reason',
                'processing_time', 'result'}
  local w = redis.call('HMGET', job, 'webhook_url', 'webhook_target', 'webhook_progress')
  local prefix = string.sub(job, 1, #job - #id - 5)
  local did
  if event == 'progress' and w[3] and redis.call('HGET', prefix .. ':whd:' .. w[3], 'attempt') == '0' then
    did = w[3]
  end
  local fresh = did == nil
  if fresh then did = id .. '.' .. redis.call('HINCRBY', job, 'webhook_seq', 1) end
  local whd = prefix .. ':whd:' .. did
  local copied = redis.call('HMGET', job, unpack(copy))
  local fields = {'job_id', id, 'event', event, 'at', now, 'url', w[1], 'target', w[2], 'attempt', 0}
  for k = 1, #copy do
    if copied[k] then extend(fields, {copy[k], copied[k]}) end
  end
  redis.call('DEL', whd)
  redis.call('HSET', whd, unpack(extend(fields, facts)))
  if event == 'progress' then redis.call('HSET', job, 'webhook_progress', did) end
  if fresh then
    redis.call('ZADD', prefix .. ':whq:' .. w[2], now, did)
    redis.call('ZADD', prefix .. ':whq', 'LT', now, w[2])
    local log = prefix .. ':whlog:' .. id
    redis.call('RPUSH', log, cjson.encode({id = did, event = event, at = tostring(now), outcome = 'queued'}))
    redis.call('LTRIM', log, -WEBHOOK_LOG, -1)
  end
end
