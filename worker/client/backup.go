package client

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// Backup chunks (docs/reliability.md, "A slow or frozen worker"), as the
// Python client does them (gomap/_defaults.py SPECULATE_*): a worker that
// froze, or runs far slower than the rest, holds its chunks until it is
// declared dead (30 s by default). Once every chunk is submitted, let T be
// backupFactor times the median time the done chunks took (submit to
// outcome), and at least backupMin. When backupDone of the chunks are done,
// or none has completed for T, a chunk outstanding for more than T is
// pushed again to the head of its queue; again after 2T and 4T, at most
// backupMax times (a copy can go to the very worker that froze, whose wait
// was armed before). Outcomes are keyed by the chunk's start, so the run
// that ends later changes nothing.
const (
	backupDone   = 0.75
	backupFactor = 3
	backupMin    = time.Second
	backupMax    = 3
	backupEvery  = 250 * time.Millisecond
)

// backups is what a batch knows of its chunks' times, for backup chunks.
type backups struct {
	pushed        map[int64]time.Time // start → when it was pushed (last)
	count         map[int64]int       // start → times pushed again
	took          []time.Duration     // submit to outcome, of each chunk collected
	lastCompleted time.Time
	checked       time.Time        // the last look for late chunks: at most backupEvery apart
	copies        map[int64]string // start → payload of the chunks pushed again, for the cleanup at the end
}

func newBackups(starts []int64, now time.Time) *backups {
	b := &backups{pushed: make(map[int64]time.Time, len(starts)), count: map[int64]int{}, lastCompleted: now,
		copies: map[int64]string{}}
	for _, s := range starts {
		b.pushed[s] = now
	}
	return b
}

// completed notes that the chunk at start came in at now.
func (k *backups) completed(start int64, now time.Time) {
	if t, ok := k.pushed[start]; ok {
		k.took = append(k.took, now.Sub(t))
		delete(k.pushed, start)
	}
	k.lastCompleted = now
}

// late returns the chunks to push again now, among pending.
func (k *backups) late(pending int, now time.Time) []int64 {
	if len(k.took) == 0 || pending == 0 || now.Sub(k.checked) < backupEvery {
		return nil
	}
	k.checked = now
	sorted := slices.Sorted(slices.Values(k.took))
	after := max(backupMin, backupFactor*sorted[len(sorted)/2])
	tail := float64(len(k.took)) >= backupDone*float64(len(k.took)+pending)
	if !tail && now.Sub(k.lastCompleted) <= after {
		return nil
	}
	var late []int64
	for start, t := range k.pushed {
		if n := k.count[start]; n < backupMax && now.Sub(t) > after<<n {
			late = append(late, start)
		}
	}
	slices.Sort(late)
	return late
}

// pushBackups pushes the late chunks that are no longer queued (a worker
// holds them, or they were lost) again, to the head of their queues. A chunk
// still queued (no worker took it yet, or none runs) is looked at again
// after the same wait.
func (b *batch) pushBackups(ctx context.Context) error {
	now := time.Now()
	late := b.backups.late(len(b.pending), now)
	if len(late) == 0 {
		return nil
	}
	at := make([]*redis.IntCmd, len(late))
	_, err := b.c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, s := range late {
			at[i] = pipe.LPos(ctx, b.shardKey(s), b.pending[s], redis.LPosArgs{})
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	var held []int64
	for i, s := range late {
		b.backups.pushed[s] = now
		if errors.Is(at[i].Err(), redis.Nil) {
			held = append(held, s)
		}
	}
	if len(held) == 0 {
		return nil
	}
	_, err = b.c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, s := range held {
			pipe.LPush(ctx, b.shardKey(s), b.pending[s])
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, s := range held {
		b.backups.count[s]++
		b.backups.copies[s] = b.pending[s]
	}
	return nil
}
