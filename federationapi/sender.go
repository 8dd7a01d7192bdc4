package federationapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// The server-server API's limits on one transaction ("Transactions").
const (
	maxTxnPDUs = 50
	maxTxnEDUs = 100
)

// dbRetryDelay is how long a destination's worker waits after a database error of our own.
const dbRetryDelay = 10 * time.Second

// backoffCheckEvery is how often a destination waiting out its backoff looks whether an
// administrator cleared it.
const backoffCheckEvery = 30 * time.Second

// catchUpAfter is the number of failures in a row after which a destination's queue keeps
// only the newest PDU of each room (storage.CollapseFederationQueue): with the default
// backoff, about a week of the destination being unreachable. It catches up from those
// events by asking for what it missed.
const catchUpAfter = 180

// SenderConfig configures the outbound transaction sender.
type SenderConfig struct {
	// Origin is this server's name, sent as the transactions' origin.
	Origin spec.ServerName
	// After a failed transaction the wait before the next attempt to the same destination
	// doubles from MinBackoff (default 1 s) up to MaxBackoff (default 1 h).
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// Now is the clock (nil: time.Now); Sleep waits d or until ctx ends, returning ctx's
	// error then (nil: a timer). Tests replace both.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// transactionSender sends one transaction (PUT /_matrix/federation/v1/send/{txnId}).
// fclient.FederationClient implements it.
type transactionSender interface {
	SendTransaction(ctx context.Context, t gomatrixserverlib.Transaction) (fclient.RespSend, error)
}

// Sender drains the federation outbox (storage's federation queue) with one worker per
// destination that has something to send. A worker has one transaction in flight at a time,
// as the spec requires ("The sending server must wait and retry for a 200 OK response
// before sending a transaction with a different txnId"), retries a failed transaction with
// the same ID and content after an exponential backoff, and stops when its queue is empty.
// Everything it needs to resume is in the database: after a restart, Start picks up every
// destination with queued rows, the transaction in flight and its backoff.
//
// Only one process may run a Sender against a database.
type Sender struct {
	cfg    SenderConfig
	db     *storage.DB
	client transactionSender
	log    *slog.Logger
	txnSeq atomic.Int64 // makes the transaction IDs made within one millisecond unique

	// For Stats: transactions sent and failed, and workers waiting out a backoff.
	sent, failed, backingOff atomic.Int64

	mu sync.Mutex
	// ctx is the workers' context and cancel ends it; nil before Start and after Close.
	// Guarded by mu.
	ctx    context.Context
	cancel context.CancelFunc
	// queues holds the wake channel (buffered, 1) of each destination with a running worker.
	// Guarded by mu.
	queues  map[spec.ServerName]chan struct{}
	workers sync.WaitGroup
	// idle, when not nil, is told each destination whose worker stopped with an empty
	// queue (tests).
	idle chan<- spec.ServerName
}

// NewSender returns a sender of the queued transactions in db, sent through client. Call
// Start to run it.
func NewSender(cfg SenderConfig, db *storage.DB, client transactionSender, log *slog.Logger) *Sender {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	return &Sender{cfg: cfg, db: db, client: client, log: log, queues: map[spec.ServerName]chan struct{}{}}
}

// Start starts a worker for every destination with queued PDUs or EDUs.
func (s *Sender) Start(ctx context.Context) error {
	dests, err := s.db.PendingFederationDestinations(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.mu.Unlock()
	for _, dest := range dests {
		s.Wake(spec.ServerName(dest))
	}
	return nil
}

// Close stops every worker, abandoning the requests in flight (they are retried with the
// same transaction IDs on the next Start), and waits for them to end.
func (s *Sender) Close() error {
	s.mu.Lock()
	cancel := s.cancel
	s.ctx, s.cancel = nil, nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	s.workers.Wait()
	return nil
}

// Go runs fn in the background, owned by the sender: fn's context ends with Close, which
// waits for it. It reports false (and does not run fn) before Start and after Close.
func (s *Sender) Go(fn func(ctx context.Context)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return false
	}
	s.workers.Add(1)
	go func(ctx context.Context) {
		defer s.workers.Done()
		fn(ctx)
	}(s.ctx)
	return true
}

// Wake tells the sender that PDUs or EDUs for destination were committed to the queue: it
// starts the destination's worker, or makes the running one look again before it stops.
// It never blocks. Before Start and after Close it does nothing; Start finds the rows.
func (s *Sender) Wake(destination spec.ServerName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return
	}
	if wake, ok := s.queues[destination]; ok {
		select {
		case wake <- struct{}{}:
		default:
		}
		return
	}
	wake := make(chan struct{}, 1)
	s.queues[destination] = wake
	s.workers.Add(1)
	go s.run(s.ctx, destination, wake)
}

// run sends the queue of dest one transaction at a time until it is empty or ctx ends.
func (s *Sender) run(ctx context.Context, dest spec.ServerName, wake chan struct{}) {
	defer s.workers.Done()
	defer s.retire(dest, wake, true)
	log := s.log.With("destination", string(dest))
	state, err := s.db.FederationDestination(ctx, string(dest))
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		log.Error("read federation destination state", "err", err)
	}
	failures, retryAt := state.Failures, time.UnixMilli(state.RetryTS)
	for {
		waited := false // counted in backingOff
		for d := retryAt.Sub(s.cfg.Now()); d > 0; d = retryAt.Sub(s.cfg.Now()) {
			if !waited {
				s.backingOff.Add(1)
				waited = true
			}
			// Waits in steps, looking at the stored backoff after each: `lattice
			// federation-retry` clears it to have the destination tried at once.
			if s.cfg.Sleep(ctx, min(d, backoffCheckEvery)) != nil {
				s.backingOff.Add(-1)
				return
			}
			if st, err := s.db.FederationDestination(ctx, string(dest)); err == nil && time.UnixMilli(st.RetryTS).Before(retryAt) {
				failures, retryAt = st.Failures, time.UnixMilli(st.RetryTS)
			}
		}
		if waited {
			s.backingOff.Add(-1)
		}
		txn, err := s.db.NextFederationTxn(ctx, string(dest), maxTxnPDUs, maxTxnEDUs, s.newTxnID())
		if errors.Is(err, storage.ErrNotFound) {
			if s.retire(dest, wake, false) {
				if s.idle != nil {
					s.idle <- dest
				}
				return
			}
			continue
		} else if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Error("read federation queue", "err", err)
			retryAt = s.cfg.Now().Add(dbRetryDelay)
			continue
		}
		if err := s.send(ctx, dest, txn, log); err != nil {
			if ctx.Err() != nil {
				return // shutting down: not the destination's failure
			}
			s.failed.Add(1)
			failures++
			backoff := s.backoff(failures)
			retryAt = s.cfg.Now().Add(backoff)
			log.Warn("federation transaction failed", "txn_id", txn.ID, "failures", failures, "retry_in", backoff, "err", err)
			if failures >= catchUpAfter {
				if n, err := s.db.CollapseFederationQueue(ctx, string(dest)); err != nil && ctx.Err() == nil {
					log.Error("collapse federation queue", "err", err)
				} else if n > 0 {
					log.Info("destination unreachable for long: queue reduced to the newest event of each room", "dropped", n)
				}
			}
			if err := s.db.SetFederationBackoff(ctx, string(dest), failures, retryAt.UnixMilli()); err != nil && ctx.Err() == nil {
				log.Error("record federation backoff", "err", err)
			}
			continue
		}
		s.sent.Add(1)
		failures, retryAt = 0, time.Time{}
		if err := s.db.FederationTxnSent(ctx, string(dest), txn.ID); err != nil {
			if ctx.Err() != nil {
				return
			}
			// The next attempt sends the same transaction again; the destination
			// recognises its ID.
			log.Error("dequeue sent federation transaction", "txn_id", txn.ID, "err", err)
			retryAt = s.cfg.Now().Add(dbRetryDelay)
		}
	}
}

// SenderStats are the sender's counts since start.
type SenderStats struct {
	Sent, Failed int64 // transactions
	BackingOff   int64 // destinations waiting out a backoff now
}

// Stats returns the sender's counts, for the metrics.
func (s *Sender) Stats() SenderStats {
	return SenderStats{Sent: s.sent.Load(), Failed: s.failed.Load(), BackingOff: s.backingOff.Load()}
}

// retire removes dest's worker from the running ones and reports true, unless force is
// false and the worker was woken since it last found its queue empty: then rows may have
// been committed after it looked, and it must look again.
func (s *Sender) retire(dest spec.ServerName, wake chan struct{}, force bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !force {
		select {
		case <-wake:
			return false
		default:
		}
	}
	if s.queues[dest] == wake {
		delete(s.queues, dest)
	}
	return true
}

// send sends txn to dest. The destination's answers about single PDUs are logged: the spec
// has the sender use a 200 response "even in the event of one or more PDUs failing to be
// processed", so those PDUs are not sent again.
func (s *Sender) send(ctx context.Context, dest spec.ServerName, txn *storage.FederationTxn, log *slog.Logger) error {
	t := gomatrixserverlib.Transaction{
		TransactionID:  gomatrixserverlib.TransactionID(txn.ID),
		Origin:         s.cfg.Origin,
		Destination:    dest,
		OriginServerTS: spec.AsTimestamp(s.cfg.Now()),
		PDUs:           make([]json.RawMessage, 0, len(txn.PDUs)), // "pdus" is required, also when empty
	}
	for _, pdu := range txn.PDUs {
		t.PDUs = append(t.PDUs, pdu)
	}
	for _, edu := range txn.EDUs {
		t.EDUs = append(t.EDUs, gomatrixserverlib.EDU{Type: edu.Type, Origin: string(s.cfg.Origin), Content: edu.Content})
	}
	res, err := s.client.SendTransaction(ctx, t)
	if err != nil {
		return fmt.Errorf("send transaction %s to %s: %w", txn.ID, dest, err)
	}
	for eventID, r := range res.PDUs {
		if r.Error != "" {
			log.Warn("destination did not accept an event", "txn_id", txn.ID, "event_id", eventID, "err", r.Error)
		}
	}
	return nil
}

// backoff is the wait after the given number of failures in a row: MinBackoff doubled
// for each failure after the first, at most MaxBackoff.
func (s *Sender) backoff(failures int) time.Duration {
	d := s.cfg.MinBackoff
	for i := 1; i < failures && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.cfg.MaxBackoff)
}

// newTxnID returns a transaction ID unique among those this server sends: the time in
// milliseconds and a counter, so that IDs stay unique across restarts.
func (s *Sender) newTxnID() string {
	return fmt.Sprintf("%d.%d", s.cfg.Now().UnixMilli(), s.txnSeq.Add(1))
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
