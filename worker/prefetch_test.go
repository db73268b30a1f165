package worker

import (
	"testing"
	"time"
)

func TestAheadFollowsTheRoundTripAndTheJobTime(t *testing.T) {
	for _, c := range []struct {
		name        string
		prefetch    int
		rtt, job    time.Duration
		concurrency int
		want        int
	}{
		{"one machine: none", 0, 80 * time.Microsecond, 10 * time.Microsecond, 8, 0},
		{"a link, long jobs: one", 0, time.Millisecond, 50 * time.Millisecond, 8, 1},
		{"a link, short jobs: a round trip's worth", 0, 2 * time.Millisecond, 300 * time.Microsecond, 8, 7},
		{"at most the slots", 0, 20 * time.Millisecond, 100 * time.Microsecond, 8, 8},
		{"no job yet: one", 0, time.Millisecond, 0, 8, 1},
		{"fixed", 3, 0, 0, 8, 3},
		{"never", -1, 20 * time.Millisecond, time.Microsecond, 8, 0},
	} {
		w := &Worker{cfg: Config{Prefetch: c.prefetch, Concurrency: c.concurrency}}
		if c.rtt > 0 {
			w.rtt.add(c.rtt)
		}
		if c.job > 0 {
			w.jobTime.add(c.job)
		}
		if got := w.ahead(); got != c.want {
			t.Errorf("%s: ahead() = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestEWMAMovesAnEighthOfTheWay(t *testing.T) {
	var e ewma
	e.add(800 * time.Microsecond)
	e.add(0)
	if got := e.get(); got != 700*time.Microsecond {
		t.Errorf("ewma %v, want 700µs", got)
	}
}
