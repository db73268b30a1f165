package protocol

import (
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// DefaultMaxPayload is the largest payload a worker takes by default, in
// bytes: 16 MiB, far below Redis' proto-max-bulk-len (512 MB). A worker
// publishes its own limit as "max_payload" in its record; clients refuse a
// bigger chunk before they send it.
const DefaultMaxPayload = 16 << 20

// DefaultMaxChunkItems is the most items a chunk may have by default. Both
// clients cut at most 10,000 items per chunk unless told otherwise; a chunk
// of millions of tiny items (16 MiB holds 5 million "[]") would otherwise
// make the worker build an outcome, and an error, per item.
const DefaultMaxChunkItems = 1_000_000

// FailedTextLimit is how many bytes of a payload a failed entry keeps when it
// keeps the payload as a JSON string: one that is not valid JSON, or one
// bigger than the worker's max payload. Past it the text is cut and marked.
const FailedTextLimit = 64 << 10

// AppendText appends s as a JSON string, with invalid UTF-8 replaced by
// U+FFFD. total is the length of the whole text, of which s may be only the
// start. When the text is longer than limit bytes, the string holds its first
// limit bytes at most (cut between characters) and ends with
// "…[truncated: <total> bytes in all]".
func AppendText(dst []byte, s string, total, limit int) []byte {
	cut := total > len(s) || len(s) > limit
	if len(s) > limit {
		s = s[:limit]
	}
	if cut {
		s = trimPartialRune(s)
	}
	q, err := jsontext.AppendQuote(dst, strings.ToValidUTF8(s, "\uFFFD"))
	if err != nil { // cannot happen: the text is valid UTF-8 now
		q = append(dst, `""`...)
	}
	if !cut {
		return q
	}
	q = append(q[:len(q)-1], truncatedMarker(total)...)
	return append(q, '"')
}

// ValidJSON reports whether s is one JSON value, with only whitespace around
// it: RFC 8259 JSON in valid UTF-8, names allowed twice in an object. It
// reads s as a stream, so it does not copy s whole (a single long string in
// it, it does).
func ValidJSON(s string) bool {
	dec := jsontext.NewDecoder(strings.NewReader(s), jsontext.AllowDuplicateNames(true))
	if dec.SkipValue() != nil {
		return false
	}
	_, err := dec.ReadToken()
	return err == io.EOF
}

// Sanitize returns s as valid UTF-8 (invalid bytes replaced by U+FFFD), cut
// after limit bytes with the same marker as AppendText. Failure messages go
// through it: they may quote payload text.
func Sanitize(s string, limit int) string {
	if len(s) <= limit {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	return strings.ToValidUTF8(trimPartialRune(s[:limit]), "\uFFFD") + truncatedMarker(len(s))
}

func truncatedMarker(total int) string {
	return "…[truncated: " + strconv.Itoa(total) + " bytes in all]"
}

// trimPartialRune drops the start of a UTF-8 sequence that a cut split.
func trimPartialRune(s string) string {
	for i := len(s) - 1; i >= 0 && i >= len(s)-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			if !utf8.FullRuneInString(s[i:]) {
				return s[:i]
			}
			return s
		}
	}
	return s
}

// ReserveScript reserves the job at the head of a queue, as LMOVE queue
// inflight LEFT RIGHT does, and returns it when it is at most ARGV[1] bytes.
// A bigger job is reserved all the same (it stays in flight until its failed
// entry is written) but only its size and its first ARGV[2] bytes come back,
// so a worker never reads it.
//
//	KEYS[1] queue   KEYS[2] in-flight list (same cluster slot by the hash tag)
//	ARGV[1] max payload   ARGV[2] bytes of an oversize payload to return
//	returns the payload, or {size, first bytes}, or nil when the queue is empty
const ReserveScript = `
local job = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
if not job then return false end
local n = string.len(job)
if n <= tonumber(ARGV[1]) then return job end
return {n, string.sub(job, 1, tonumber(ARGV[2]))}
`

// DropOversizeScript acknowledges an oversize job, which the worker holds
// only the size and the first bytes of: it removes from the in-flight list
// the job of that size with that start. The worker reserves nothing more
// from the queue until then, so that job is the last of the list, and the
// search from the tail ends at the first step.
//
//	KEYS[1] in-flight list   ARGV[1] size   ARGV[2] first bytes
//	returns 1 when removed, 0 when no such job is in flight
const DropOversizeScript = `
local size, head = tonumber(ARGV[1]), ARGV[2]
for i = -1, -redis.call('LLEN', KEYS[1]), -1 do
  local job = redis.call('LINDEX', KEYS[1], i)
  if string.len(job) == size and string.sub(job, 1, string.len(head)) == head then
    if i == -1 then
      redis.call('LTRIM', KEYS[1], 0, -2)
    else
      redis.call('LREM', KEYS[1], 1, job)
    end
    return 1
  end
end
return 0
`
