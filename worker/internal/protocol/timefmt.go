package protocol

import "time"

// The time formats Ruby Resque writes, so Ruby tools parse what gomap writes.

// RubyTimeString is Ruby's Time#to_s ("2025-04-15 19:42:01 +0000"), the value of
// worker:<id>:started.
func RubyTimeString(t time.Time) string { return t.Format("2006-01-02 15:04:05 -0700") }

// HeartbeatTime is Ruby's Time#iso8601 in local time ("2025-04-15T19:42:01+00:00"),
// the value of a workers:heartbeat field.
func HeartbeatTime(t time.Time) string { return t.Format("2006-01-02T15:04:05-07:00") }

// RunAt is Ruby's Time.now.utc.iso8601 ("2025-04-15T19:42:01Z"), the run_at of worker:<id>.
func RunAt(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// FailedAt is Ruby's strftime("%Y/%m/%d %H:%M:%S %Z") ("2025/04/15 19:42:01 UTC"),
// the failed_at of a failed entry.
func FailedAt(t time.Time) string { return t.Format("2006/01/02 15:04:05 MST") }
