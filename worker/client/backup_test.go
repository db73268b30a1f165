package client

import (
	"slices"
	"testing"
	"time"
)

func TestLateChunksFollowTheRule(t *testing.T) {
	t0 := time.Unix(1000, 0)
	k := newBackups([]int64{0, 10, 20, 30}, t0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	// Three of four done after 100 ms each: the tail; T = max(1 s, 3 x 100 ms) = 1 s.
	for _, s := range []int64{0, 10, 20} {
		k.completed(s, at(100*time.Millisecond))
	}
	if got := k.late(1, at(800*time.Millisecond)); got != nil {
		t.Fatalf("late at 0.8 s: %v, want none before T", got)
	}
	if got := k.late(1, at(1100*time.Millisecond)); !slices.Equal(got, []int64{30}) {
		t.Fatalf("late at 1.1 s: %v, want [30]", got)
	}
	k.count[30], k.pushed[30] = 1, at(1100*time.Millisecond)
	if got := k.late(1, at(2500*time.Millisecond)); got != nil {
		t.Fatalf("late 1.4 s after the first copy: %v, want none before 2T", got)
	}
	if got := k.late(1, at(3200*time.Millisecond)); !slices.Equal(got, []int64{30}) {
		t.Fatalf("late 2.1 s after the first copy: %v, want [30] again", got)
	}
	k.count[30] = backupMax
	if got := k.late(1, at(time.Hour)); got != nil {
		t.Fatalf("after %d copies: %v, want no more", backupMax, got)
	}
}

func TestNoBackupBeforeTheTailUnlessTheBatchStalls(t *testing.T) {
	t0 := time.Unix(1000, 0)
	k := newBackups([]int64{0, 1, 2, 3}, t0)
	k.completed(0, t0.Add(100*time.Millisecond)) // 1 of 4: not the tail
	if got := k.late(3, t0.Add(1000*time.Millisecond)); got != nil {
		t.Fatalf("late %v while chunks completed within T", got)
	}
	// No chunk completed for more than T = 1 s: a stall, every chunk outstanding past T is late.
	if got := k.late(3, t0.Add(1300*time.Millisecond)); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("late %v after a stall, want [1 2 3]", got)
	}
}
