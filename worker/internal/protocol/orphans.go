package protocol

import (
	"crypto/sha1"
	"encoding/hex"
	"strconv"
)

// OrphansScript finds the jobs of an in-flight list that its worker does not
// know it holds: jobs a reserve moved there whose reply never reached the
// worker. The worker names every job it holds by its JobDigest; the script
// takes one list entry away per name, in list order, and returns the rest,
// oldest first, at most ARGV[3] of them: a job of at most ARGV[1] bytes
// whole, a bigger one as its size and its first ARGV[2] bytes (as
// ReserveScript does). It changes nothing: the jobs stay in flight, and the
// worker runs them as if it had just reserved them.
//
//	KEYS[1] in-flight list
//	ARGV[1] max payload   ARGV[2] bytes of an oversize payload to return
//	ARGV[3] most jobs to return   ARGV[4…] the JobDigest of every job held
//	returns {orphans in all, {payload or {size, first bytes}, …}}
const OrphansScript = `
local max, head, most = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local held = {}
for i = 4, #ARGV do held[ARGV[i]] = (held[ARGV[i]] or 0) + 1 end
local n, out = 0, {}
for _, job in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local size, name = string.len(job)
  if size <= max then
    name = redis.sha1hex(job)
  else
    name = size .. ':' .. redis.sha1hex(string.sub(job, 1, head))
  end
  if (held[name] or 0) > 0 then
    held[name] = held[name] - 1
  else
    n = n + 1
    if #out < most then
      if size <= max then
        out[#out + 1] = job
      else
        out[#out + 1] = {size, string.sub(job, 1, head)}
      end
    end
  end
end
return {n, out}
`

// JobDigest names a held job for OrphansScript: the SHA-1 of the payload in
// hex, or for a job bigger than the worker's max payload, of which payload
// holds only the first FailedTextLimit bytes, "<size>:" and the SHA-1 of
// those bytes. size is 0 for a job held whole.
func JobDigest(payload string, size int) string {
	sum := sha1.Sum([]byte(payload))
	d := hex.EncodeToString(sum[:])
	if size > 0 {
		return strconv.Itoa(size) + ":" + d
	}
	return d
}
