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
  return s[1], s[3], s[4], s[5]
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
