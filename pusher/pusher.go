// Package pusher sends users' notifications to their push gateways (the push gateway API,
// POST /_matrix/push/v1/notify) through their HTTP pushers. It is a top-level component
// beside the HTTP surfaces rather than part of roomserver because it makes outbound HTTP
// requests and owns a background worker (Start/Close); it reads the notifications the
// roomserver stored (storage.PushActionsAfter) and imports storage only, no API package.
//
// The worker follows the notifications in event order from the position it had at Start:
// notifications stored while no process ran a pusher are not sent.
package pusher

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/lattice-chat/lattice/storage"
)

// Config tunes delivery.
type Config struct {
	// Client sends the requests; nil means one with a 10 s timeout.
	Client *http.Client
	// Attempts bounds the tries of one request (default 5); the wait between tries doubles
	// from MinBackoff (default 1 s) up to MaxBackoff (default 1 min).
	Attempts   int
	MinBackoff time.Duration
	MaxBackoff time.Duration
}

// Pusher delivers notifications to push gateways. It is a roomserver listener: a commit only
// wakes its worker, which never runs on the commit path.
type Pusher struct {
	cfg  Config
	db   *storage.DB
	log  *slog.Logger
	wake chan struct{} // buffered (1): a pending wake-up
	// committed is the newest committed event stream position the worker was told about;
	// the push actions of every event up to it are committed too (same transaction).
	committed atomic.Int64
	// For Stats: requests to gateways by outcome.
	pushed, pushRejected, pushFailed atomic.Int64

	cancel context.CancelFunc
	done   chan struct{} // closed when the worker has stopped
}

// Stats are the pusher's counts of requests to push gateways since start.
type Stats struct {
	Sent     int64 // accepted, every pushkey
	Rejected int64 // accepted, but some pushkeys rejected (their pushers are removed)
	Failed   int64 // not delivered after every attempt
}

// Stats returns the pusher's counts, for the metrics.
func (p *Pusher) Stats() Stats {
	return Stats{Sent: p.pushed.Load(), Rejected: p.pushRejected.Load(), Failed: p.pushFailed.Load()}
}

// coalesce is how long the worker waits after a wake-up before reading, to serve a burst of
// commits with one read; pushes go out this much later at most.
const coalesce = 50 * time.Millisecond

// batchEvents is how many events' notifications the worker reads at a time.
const batchEvents = 100

// New returns a pusher reading notifications from db. Call Start to run it.
func New(cfg Config, db *storage.DB, log *slog.Logger) *Pusher {
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 5
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Minute
	}
	return &Pusher{cfg: cfg, db: db, log: log, wake: make(chan struct{}, 1)}
}

// Start starts the worker from the newest stored notification.
func (p *Pusher) Start(ctx context.Context) error {
	// Start after the newest event: notifications of events committed before a start are
	// not sent late (the pusher keeps no position of its own yet).
	after, err := p.db.MaxEventNID(ctx)
	if err != nil {
		return err
	}
	ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	p.done = make(chan struct{})
	go p.run(ctx, after)
	return nil
}

// Close stops the worker, abandoning a delivery in progress, and waits for it to end.
func (p *Pusher) Close() error {
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	<-p.done
	return nil
}

// EventsCommitted implements roomserver.Listener: it wakes the worker without blocking.
func (p *Pusher) EventsCommitted(pos int64, _ []string) {
	for {
		cur := p.committed.Load()
		if pos <= cur || p.committed.CompareAndSwap(cur, pos) {
			break
		}
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run delivers the notifications after after each time it is woken, until ctx ends.
func (p *Pusher) run(ctx context.Context, after int64) {
	defer close(p.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		}
		// Let a burst of commits land, so that one read serves many of them.
		select {
		case <-ctx.Done():
			return
		case <-time.After(coalesce):
		}
		for {
			// Without notifications for pushers up to upTo, the worker moves past it, so it
			// never reads the same rows again.
			upTo := p.committed.Load()
			acts, err := p.db.PushActionsAfter(ctx, after, upTo, batchEvents)
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					p.log.Error("read notifications to push", "err", err)
				}
				break
			}
			if len(acts) == 0 {
				after = max(after, upTo)
				break
			}
			for _, a := range acts {
				p.deliver(ctx, a)
				after = max(after, a.EventNID)
			}
			if ctx.Err() != nil {
				return
			}
		}
	}
}
