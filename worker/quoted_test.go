package worker

import (
	"testing"

	"github.com/gomap/gomap/worker/internal/protocol"
)

// quoted, the worker record's fast JSON quoting of a queue name, writes the
// bytes protocol.Marshal writes, for every printable ASCII character and for
// names that need escapes.
func TestQuotedMatchesMarshal(t *testing.T) {
	names := []string{"", "default", "high-priority_1.x:y", "a\"b", `back\slash`, "tab\there", "é", "<&>", "\x7f", "\xff"}
	for c := range 0x80 {
		names = append(names, "q"+string(rune(c)))
	}
	for _, s := range names {
		want, err := protocol.Marshal(s)
		if err != nil {
			want = []byte(`""`)
		}
		if got := quoted(s); got != string(want) {
			t.Errorf("quoted(%q) = %s, want %s", s, got, want)
		}
	}
}
