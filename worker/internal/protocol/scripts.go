package protocol

// WriteResultScript stores one chunk's outcome and signals the client. It
// writes nothing when the batch is gone (cancelled, finished or expired), so
// a chunk that runs late never re-creates a batch's keys. The results and done
// keys take the meta key's remaining TTL. The chunk's progress field in meta
// (ProgressScript) goes in the same step, so a client never counts its items
// twice. Meta's "done" and "failed" fields add up the chunk's items and its
// failed items, for anybody watching the batch (gomap status, the
// dashboard); a chunk whose outcome is still there when it runs again is not
// counted twice.
//
//	KEYS[1] batch meta   KEYS[2] batch results   KEYS[3] batch done
//	ARGV[1] chunk start (decimal)   ARGV[2] chunk outcome (JSON)
//	ARGV[3] items of the chunk   ARGV[4] of them failed
//	returns 1 when written, 0 when the batch is gone
const WriteResultScript = `
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then return 0 end
redis.call('HDEL', KEYS[1], 'running:' .. ARGV[1])
if redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'done', ARGV[3])
  if ARGV[4] ~= '0' then redis.call('HINCRBY', KEYS[1], 'failed', ARGV[4]) end
end
redis.call('RPUSH', KEYS[3], ARGV[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
end
return 1
`

// ProgressScript records how many items of a running chunk are done, in the
// batch's meta hash under "running:<start>", so a client's progress bar moves
// item by item while the chunk runs. It writes nothing when the batch is gone
// (and never re-creates meta).
//
//	KEYS[1] batch meta   ARGV[1] chunk start (decimal)   ARGV[2] items done
//	returns 1 when written, 0 when the batch is gone
const ProgressScript = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'running:' .. ARGV[1], ARGV[2])
return 1
`

// CollectScript takes completed chunks off a batch, exactly once. A client
// sends it right behind a BLMOVE of the done list into the taken list, in one
// pipeline: the BLMOVE blocks until a chunk completes, then this script runs
// at once.
//
// The taken list holds the starts delivered to the client but not yet
// acknowledged. ARGV[3…] are the client's acknowledgements: every start its
// previous reply brought. The script deletes their outcomes and drops them
// from taken, pops up to ARGV[1] more starts from done onto taken, and
// returns every start on taken with its outcome. A reply lost on the way
// (a dropped connection) loses nothing: the client sends the same
// acknowledgements again and gets those starts again. A start whose outcome
// is missing (a chunk that ran twice, its outcome taken already) comes back
// with a nil outcome. With ARGV[2] > 0, the batch's keys get that TTL again.
// The reply starts with the items done so far in chunks still running (the
// sum of meta's "running:" fields, ProgressScript). When the meta key is gone
// (the batch expired, or Redis lost it in a restart or failover), the reply
// is the one string "lost".
//
//	KEYS[1] done   KEYS[2] results   KEYS[3] meta   KEYS[4] taken
//	ARGV[1] most starts to pop   ARGV[2] TTL in ms (0: leave)   ARGV[3…] acknowledged starts
//	returns running, start1, outcome1, start2, outcome2, …   or   "lost"
const CollectScript = `
local meta = redis.call('HGETALL', KEYS[3])
if #meta == 0 then return {'lost'} end
local running = 0
for i = 1, #meta, 2 do
  if string.sub(meta[i], 1, 8) == 'running:' then running = running + tonumber(meta[i + 1]) end
end
local acked = {}
for i = 3, #ARGV do
  acked[ARGV[i]] = true
  redis.call('HDEL', KEYS[2], ARGV[i])
end
local starts = {}
for _, s in ipairs(redis.call('LRANGE', KEYS[4], 0, -1)) do
  if not acked[s] then starts[#starts + 1] = s end
end
local popped = redis.call('LPOP', KEYS[1], ARGV[1])
if popped then
  for _, s in ipairs(popped) do
    if not acked[s] then starts[#starts + 1] = s end
  end
end
redis.call('DEL', KEYS[4])
for i = 1, #starts, 1000 do
  redis.call('RPUSH', KEYS[4], unpack(starts, i, math.min(i + 999, #starts)))
end
local out = {running}
for _, s in ipairs(starts) do
  out[#out + 1] = s
  out[#out + 1] = redis.call('HGET', KEYS[2], s)
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
end
return out
`

// SubmitScript creates a batch's meta key and pushes a group of its chunks,
// exactly once: the meta field "submitted" counts the chunks pushed so far,
// so a group sent again after its reply was lost is not pushed twice. It
// returns the number of chunks submitted after the call, or "lost" when meta
// is gone after the first group. It names keys of several hash slots, so a
// client uses it on a single Redis only; on a Redis Cluster it writes meta
// first, then pushes the chunks with RPUSH (a retry may queue a chunk twice).
//
//	KEYS[1] meta   KEYS[2] queues   KEYS[3] queue
//	ARGV[1] TTL ms   ARGV[2] function   ARGV[3] queue name   ARGV[4] items (-1: unknown)
//	ARGV[5] created (unix seconds)   ARGV[6] chunks before this group   ARGV[7] client ("go", "python")
//	ARGV[8…] payloads
const SubmitScript = `
local offset = tonumber(ARGV[6])
local n = #ARGV - 7
local submitted = redis.call('HGET', KEYS[1], 'submitted')
if submitted then
  submitted = tonumber(submitted)
  if submitted >= offset + n then return submitted end
elseif offset > 0 then
  return 'lost'
else
  redis.call('HSET', KEYS[1], 'function', ARGV[2], 'queue', ARGV[3], 'items', ARGV[4],
    'created', ARGV[5], 'client', ARGV[7], 'submitted', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  submitted = 0
end
if submitted ~= offset then
  return redis.error_reply('gomap submit: ' .. submitted .. ' chunks submitted, this group starts at ' .. offset)
end
if n > 0 then
  redis.call('SADD', KEYS[2], ARGV[3])
  for i = 8, #ARGV, 1000 do
    redis.call('RPUSH', KEYS[3], unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
  redis.call('HSET', KEYS[1], 'submitted', offset + n)
end
return offset + n
`

// RequeueScript moves every in-flight job of a dead or stopping worker back to
// the head of its queue in one step, oldest first, so a worker blocked on the
// queue takes them in their original order.
//
// It counts the requeues of each payload in a hash, under the SHA-1 of the
// payload. A payload requeued more than ARGV[1] times is poison: it goes to
// the poison list instead, and its count is dropped; the worker then turns
// it into a failed entry (or a chunk's outcome). ARGV[1] < 0 counts nothing.
// The hash expires ARGV[2] ms after its last requeue.
//
//	KEYS[1] in-flight list   KEYS[2] queue   KEYS[3] requeue counts   KEYS[4] poison list
//	(one cluster slot: the queue key is the hash tag of the others)
//	ARGV[1] most requeues of a payload   ARGV[2] TTL of the counts in ms
//	returns {jobs moved to the queue, jobs moved to the poison list}
const RequeueScript = `
local jobs = redis.call('LRANGE', KEYS[1], 0, -1)
local most = tonumber(ARGV[1])
local moved, poison = 0, 0
for i = #jobs, 1, -1 do
  local n = 0
  if most >= 0 then
    n = redis.call('HINCRBY', KEYS[3], redis.sha1hex(jobs[i]), 1)
  end
  if most >= 0 and n > most then
    redis.call('HDEL', KEYS[3], redis.sha1hex(jobs[i]))
    redis.call('LPUSH', KEYS[4], jobs[i])
    poison = poison + 1
  else
    redis.call('LPUSH', KEYS[2], jobs[i])
    moved = moved + 1
  end
end
redis.call('DEL', KEYS[1])
if most >= 0 and #jobs > 0 then redis.call('PEXPIRE', KEYS[3], ARGV[2]) end
return {moved, poison}
`

// ReserveBatchScript reserves up to ARGV[3] jobs from the head of a queue at
// once, each as ReserveScript does (LMOVE queue inflight LEFT RIGHT), for a
// worker with that many idle slots. It stops after a job bigger than ARGV[1]
// bytes, which comes back as its size and first ARGV[2] bytes: nothing more
// is reserved from the queue until that job is acknowledged.
//
//	KEYS[1] queue   KEYS[2] in-flight list (same cluster slot by the hash tag)
//	ARGV[1] max payload   ARGV[2] bytes of an oversize payload to return   ARGV[3] most jobs
//	returns {payload or {size, first bytes}, …} in queue order, empty when the queue is empty
const ReserveBatchScript = `
local max, head = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 1, tonumber(ARGV[3]) do
  local job = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not job then break end
  local n = string.len(job)
  if n <= max then
    out[i] = job
  else
    out[i] = {n, string.sub(job, 1, head)}
    break
  end
end
return out
`

// RemoveFailedScript is Resque's Failure::Redis.remove (LSET the entry to a
// sentinel, then LREM the sentinel) in one step, and only if the entry is
// still the one read (the list may have moved since): the inspectors' remove.
//
//	KEYS[1] failed   ARGV[1] index   ARGV[2] the entry as read   ARGV[3] a sentinel
//	returns 1 when removed, 0 when the entry changed
const RemoveFailedScript = `
if redis.call('LINDEX', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('LSET', KEYS[1], ARGV[1], ARGV[3])
return redis.call('LREM', KEYS[1], 1, ARGV[3])
`

// MarkRetriedScript rewrites a failed entry in place (with its retried_at,
// as resque-web does when it retries one), only if it is still the one read.
//
//	KEYS[1] failed   ARGV[1] index   ARGV[2] the entry as read   ARGV[3] the entry rewritten
//	returns 1 when rewritten, 0 when the entry changed
const MarkRetriedScript = `
if redis.call('LINDEX', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('LSET', KEYS[1], ARGV[1], ARGV[3])
return 1
`
