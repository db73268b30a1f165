package client

import (
	"context"
	"errors"
	"sync"
)

// background runs the cancels that Redis did not answer in time, so that a
// cancelled batch's queued chunks do not wait for nobody once Redis is back.
// Close stops them and reports those that failed on their own.
type background struct {
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
}

func newBackground() *background {
	ctx, stop := context.WithCancel(context.Background())
	return &background{ctx: ctx, stop: stop}
}

// cancel retries b's cancel for StallTolerance, or until close.
func (g *background) cancel(b *batch) {
	g.wg.Go(func() {
		ctx, stop := context.WithTimeout(g.ctx, b.o.StallTolerance)
		defer stop()
		err := b.retry(ctx, "cancelling in the background", b.cancelOnce)
		if err != nil && g.ctx.Err() == nil {
			g.mu.Lock()
			g.errs = append(g.errs, ownTimeout(ctx, err, b.o.StallTolerance))
			g.mu.Unlock()
		}
	})
}

// close abandons the cancels still running (the batches' keys expire with
// their TTL) and returns the errors of those that failed before.
func (g *background) close() error {
	g.stop()
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	return errors.Join(g.errs...)
}
