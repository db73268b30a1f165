package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// Backoff between retries: from retryFirst, doubling up to retryMost, each
// wait drawn at random from its upper half so that clients do not retry in
// step.
const (
	retryFirst = 50 * time.Millisecond
	retryMost  = time.Second
)

// errNoAnswer stands for the attempt deadline that StallTolerance sets, so
// that the error Map returns does not look like the end of its ctx.
var errNoAnswer = errors.New("no answer from Redis")

// retry runs op, one idempotent round trip of the batch, until it succeeds.
// It retries transient errors (see transient) with backoff until ctx's
// deadline or, when ctx has none, until StallTolerance has passed since the
// round trip was first tried; each attempt then has the rest of that time
// as its deadline, so a Redis that stalls cannot hold it longer. Any other
// error is returned at once.
func (b *batch) retry(ctx context.Context, what string, op func(ctx context.Context) error) error {
	_, bounded := ctx.Deadline()
	failingSince := time.Now()
	limit := failingSince.Add(b.o.StallTolerance)
	wait := retryFirst
	for {
		actx, stop := ctx, context.CancelFunc(func() {})
		if !bounded {
			actx, stop = context.WithDeadline(ctx, limit)
		}
		err := op(actx)
		attemptEnded := actx.Err() != nil
		stop()
		ctxErr := errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
		switch {
		case err == nil:
			return nil
		case !transient(err) && !attemptEnded && !ctxErr:
			return err // a task's error, a lost batch, NOPERM, …: even if ctx ended meanwhile
		case ctx.Err() != nil:
			return fmt.Errorf("batch %s: %s: %w", b.id, what, ctx.Err())
		case !bounded && (attemptEnded || !time.Now().Before(limit)):
			b.unreachable = true
			if errors.Is(err, context.DeadlineExceeded) {
				err = errNoAnswer // the attempt's deadline, not the caller's
			}
			return fmt.Errorf("batch %s: %s: Redis kept failing for %v (MapOptions.StallTolerance; check that it is up and reachable, or give ctx a deadline): %w",
				b.id, what, time.Since(failingSince).Round(time.Millisecond), err)
		}
		d := wait/2 + rand.N(wait/2+1)
		if !bounded {
			d = min(d, time.Until(limit))
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("batch %s: %s: %w (last error: %w)", b.id, what, ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, retryMost)
	}
}

// transient says whether err may pass if the same round trip is tried again:
// network errors and timeouts (a dropped connection, a restarting or stalled
// server), and the replies of a server that is loading its data, failing
// over, out of connections or busy with a long script. Authentication, permission, out-of-memory and
// script errors, TLS verification failures and a closed client are not.
func transient(err error) bool {
	if err == nil || errors.Is(err, redis.ErrClosed) {
		return false
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" && !tlsFailure(err) {
		return true // nothing was sent; the dial may have been cut short by its own timeout
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return redis.IsLoadingError(err) || redis.IsReadOnlyError(err) || redis.IsTryAgainError(err) ||
			redis.IsClusterDownError(err) || redis.IsMasterDownError(err) || redis.IsMaxClientsError(err) ||
			redis.HasErrorPrefix(err, "BUSY ")
	}
	if tlsFailure(err) {
		return false
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, redis.ErrPoolTimeout) {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}

// tlsFailure says whether err is a TLS handshake that failed for good: a
// certificate that does not verify, or the server refusing ours.
func tlsFailure(err error) bool {
	var verify *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var alert tls.AlertError
	var header tls.RecordHeaderError
	return errors.As(err, &verify) || errors.As(err, &unknownCA) || errors.As(err, &hostname) ||
		errors.As(err, &invalid) || errors.As(err, &alert) || errors.As(err, &header)
}
