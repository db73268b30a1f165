package protocol

// WriteResultScript stores one chunk's outcome and signals the client. It
// writes nothing when the batch is gone (cancelled, finished or expired), so
// a chunk that runs late never re-creates a batch's keys. The results and done
// keys take the meta key's remaining TTL.
//
//	KEYS[1] batch meta   KEYS[2] batch results   KEYS[3] batch done
//	ARGV[1] chunk start (decimal)   ARGV[2] chunk outcome (JSON)
//	returns 1 when written, 0 when the batch is gone
const WriteResultScript = `
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('RPUSH', KEYS[3], ARGV[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
end
return 1
`

// CollectScript takes completed chunks off a batch. A client sends it right
// behind a BLMOVE of the done list into the taken list, in one pipeline: the
// BLMOVE blocks until a chunk completes, then this script runs at once. It
// takes the starts in the taken list, pops up to ARGV[1] more from done, and
// returns each start with its outcome, deleting the outcome from the results
// hash so a long batch keeps Redis memory bounded. A start whose outcome is
// missing (a chunk that ran twice and was taken already) comes back with a
// nil outcome.
//
// ARGV[3…], when given, are the starts of every chunk the client still waits
// for: if all of them come back now, the batch is complete, its keys are
// deleted and the reply ends with an extra "finished". Otherwise, with
// ARGV[2] > 0, the batch's keys get that TTL again.
//
//	KEYS[1] done   KEYS[2] results   KEYS[3] meta   KEYS[4] taken
//	ARGV[1] most starts to pop   ARGV[2] TTL in ms (0: leave)   ARGV[3…] the last starts
//	returns start1, outcome1, start2, outcome2, … [, "finished"]
const CollectScript = `
local starts = redis.call('LRANGE', KEYS[4], 0, -1)
redis.call('DEL', KEYS[4])
local popped = redis.call('LPOP', KEYS[1], ARGV[1])
if popped then
  for _, s in ipairs(popped) do starts[#starts + 1] = s end
end
local out, got = {}, {}
for _, s in ipairs(starts) do
  local v = redis.call('HGET', KEYS[2], s)
  if v then
    redis.call('HDEL', KEYS[2], s)
    got[s] = true
  end
  out[#out + 1] = s
  out[#out + 1] = v
end
if #ARGV >= 3 then
  local all = true
  for i = 3, #ARGV do
    if not got[ARGV[i]] then
      all = false
      break
    end
  end
  if all then
    redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
    out[#out + 1] = 'finished'
    return out
  end
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
end
return out
`

// RequeueScript moves every in-flight job of a dead or stopping worker back to
// the head of its queue in one step, oldest first, so a worker blocked on the
// queue takes them in their original order.
//
//	KEYS[1] in-flight list   KEYS[2] queue (same cluster slot by the hash tag)
//	returns the number of jobs moved
const RequeueScript = `
local jobs = redis.call('LRANGE', KEYS[1], 0, -1)
for i = #jobs, 1, -1 do redis.call('LPUSH', KEYS[2], jobs[i]) end
redis.call('DEL', KEYS[1])
return #jobs
`
