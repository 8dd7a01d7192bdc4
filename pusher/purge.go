package pusher

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/lattice-chat/lattice/storage"
)

// PurgeConfig configures the purge of old notifications.
type PurgeConfig struct {
	// Retention is how long read notifications are kept (config push.notification_retention);
	// 0 keeps them all and the purger does nothing.
	Retention time.Duration
	// Interval is the time between purges (default 1 h); Batch the rows deleted per write
	// transaction (default 1000).
	Interval time.Duration
	Batch    int
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Purger deletes, in the background, the notifications listed by GET /notifications that are
// older than the retention and already read (storage.PurgeReadNotifications): unread ones
// are kept however old, so the unread counts never change. It runs once at Start and then
// every Interval.
type Purger struct {
	cfg PurgeConfig
	db  *storage.DB
	log *slog.Logger

	cancel context.CancelFunc
	done   chan struct{} // closed when the worker has stopped
}

// NewPurger returns a purger of db's notifications. Call Start to run it.
func NewPurger(cfg PurgeConfig, db *storage.DB, log *slog.Logger) *Purger {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Hour
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Purger{cfg: cfg, db: db, log: log}
}

// Start starts the worker; without a retention it does nothing.
func (p *Purger) Start(ctx context.Context) error {
	if p.cfg.Retention <= 0 {
		return nil
	}
	ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	p.done = make(chan struct{})
	go p.run(ctx)
	return nil
}

// Close stops the worker, abandoning a purge in progress (its committed batches stay
// deleted), and waits for it to end.
func (p *Purger) Close() error {
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	<-p.done
	return nil
}

func (p *Purger) run(ctx context.Context) {
	defer close(p.done)
	tick := time.NewTicker(p.cfg.Interval)
	defer tick.Stop()
	for {
		if _, err := p.Purge(ctx); err != nil && !errors.Is(err, context.Canceled) {
			p.log.Error("purge old notifications", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Purge deletes the read notifications older than the retention once and returns how many
// it deleted.
func (p *Purger) Purge(ctx context.Context) (int64, error) {
	before := p.cfg.Now().Add(-p.cfg.Retention).UnixMilli()
	n, err := p.db.PurgeReadNotifications(ctx, before, p.cfg.Batch)
	if n > 0 {
		p.log.Info("purged old read notifications", "deleted", n)
	}
	return n, err
}
