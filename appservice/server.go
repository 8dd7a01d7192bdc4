package appservice

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// Server is the application service component: the registry, the client API's as_token
// authentication, one transaction sender per service with a URL, and the queries asked of
// services. It is a roomserver listener: a commit only wakes the senders.
type Server struct {
	cfg        *config.Config
	regs       atomic.Pointer[Registry] // replaced by Reload
	serverName string
	db         *storage.DB
	rooms      *roomserver.Server
	typing     TypingState // nil: no typing notifications for services
	log        *slog.Logger
	// client makes every request to services. Their URLs are the operator's configuration
	// (usually loopback or an internal address), so it is a plain client, not the
	// federation's address guard.
	client *http.Client

	senders  atomic.Pointer[[]*sender] // one per service with a URL; replaced by Reload
	reloadMu sync.Mutex                // one Start or Reload at a time

	runCtx context.Context // the senders' context, set by Start
	cancel context.CancelFunc
	wg     sync.WaitGroup // the senders' goroutines
}

// registry returns the current registrations.
func (s *Server) registry() *Registry { return s.regs.Load() }

// senderList returns the current senders (do not modify the slice).
func (s *Server) senderList() []*sender {
	if p := s.senders.Load(); p != nil {
		return *p
	}
	return nil
}

// Timeouts of requests to services: transactions may carry many events; queries block a
// client's request.
const (
	txnTimeout   = 60 * time.Second
	queryTimeout = 10 * time.Second
)

// New returns the component for the services of cfg. It is a listener of the roomserver,
// so it exists first: call SetRoomserver, then Start to run the senders.
func New(cfg *config.Config, db *storage.DB, log *slog.Logger) *Server {
	s := &Server{
		cfg: cfg, serverName: cfg.ServerName, db: db, log: log,
		client: &http.Client{Timeout: txnTimeout},
	}
	reg := NewRegistry(cfg)
	s.regs.Store(reg)
	var senders []*sender
	for _, svc := range reg.list {
		if svc.HasURL() {
			senders = append(senders, newSender(s, svc))
		}
	}
	s.senders.Store(&senders)
	return s
}

// SetRoomserver gives the component the roomserver, which formats events for services.
func (s *Server) SetRoomserver(rooms *roomserver.Server) { s.rooms = rooms }

// Registry returns the registered services (the current ones: Reload replaces them).
func (s *Server) Registry() *Registry { return s.registry() }

// Start creates each service's sender user if missing, gives services seen for the first
// time their position, and starts the senders, which resume any transaction a previous run
// left unacknowledged.
func (s *Server) Start(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	for _, svc := range s.registry().list {
		if err := s.prepare(ctx, svc); err != nil {
			return err
		}
	}
	s.runCtx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := s.startSenders(ctx, s.senderList()); err != nil {
		return err
	}
	if n := len(s.registry().list); n > 0 {
		s.log.Info("application services loaded", "count", n)
	}
	return nil
}

// prepare creates the service's sender user if missing and gives a service seen for the
// first time its positions.
func (s *Server) prepare(ctx context.Context, svc *Service) error {
	// Two transactions: on PostgreSQL a conflicting insert ends its transaction.
	_, err := s.db.Account(ctx, svc.SenderID)
	if errors.Is(err, storage.ErrNotFound) {
		err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
			return tx.InsertAccount(ctx, storage.Account{UserID: svc.SenderID, CreatedTS: time.Now().UnixMilli()})
		})
	}
	if err != nil && !errors.Is(err, storage.ErrConflict) {
		return err
	}
	return s.db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.InitAppService(ctx, svc.ID); err != nil {
			return err
		}
		return tx.StartAppServiceStreams(ctx, svc.ID)
	})
}

// startSenders gives the senders the current ephemeral positions and runs them.
func (s *Server) startSenders(ctx context.Context, senders []*sender) error {
	positions, err := s.db.StreamPositions(ctx)
	if err != nil {
		return err
	}
	for _, snd := range senders {
		snd.receiptsPos = positions[storage.StreamReceipts]
		snd.presencePos = positions[storage.StreamPresence]
		if s.typing != nil {
			snd.typingPos = s.typing.Pos()
		}
		var runCtx context.Context
		runCtx, snd.cancel = context.WithCancel(s.runCtx)
		snd.done = make(chan struct{})
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer close(snd.done)
			snd.run(runCtx)
		}()
	}
	return nil
}

// Close stops the senders, abandoning requests in flight (their transactions are sent again
// with the same IDs after a restart).
func (s *Server) Close() error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	return nil
}

// EventsCommitted implements roomserver.Listener: it wakes every sender without blocking.
func (s *Server) EventsCommitted(int64, []string) {
	for _, snd := range s.senderList() {
		snd.wakeUp()
	}
}

// Status is what the admin API shows of a service.
type Status struct {
	ID               string
	URL              *string
	SenderID         string
	StreamPos        int64
	PendingTxns      int64
	PendingEvents    int64
	LastTxnID        int64
	LastError        string
	LastErrorTS      int64
	Namespaces       config.AppServiceSpace
	Protocols        []string
	RateLimited      bool
	ReceiveEphemeral bool
}

// Statuses returns the state of every service.
func (s *Server) Statuses(ctx context.Context) ([]Status, error) {
	out := []Status{}
	for _, svc := range s.registry().list {
		st, err := s.db.AppServiceState(ctx, svc.ID)
		if errors.Is(err, storage.ErrNotFound) {
			st = &storage.AppServiceState{}
		} else if err != nil {
			return nil, err
		}
		out = append(out, Status{
			ID: svc.ID, URL: svc.URL, SenderID: svc.SenderID, StreamPos: st.StreamPos,
			PendingTxns: st.Pending, PendingEvents: st.PendingEvts, LastTxnID: st.LastTxnID,
			LastError: st.LastError, LastErrorTS: st.LastErrorTS, Namespaces: svc.Namespaces,
			Protocols: svc.Protocols, RateLimited: svc.RateLimited, ReceiveEphemeral: svc.Ephemeral(),
		})
	}
	return out, nil
}

// Counts are a sender's counts since start, for the metrics.
type Counts struct {
	Txns, Events, Failures int64
}

// Counts returns the counts of each service that has a sender, by service ID.
func (s *Server) Counts() map[string]Counts {
	senders := s.senderList()
	out := make(map[string]Counts, len(senders))
	for _, snd := range senders {
		out[snd.svc.ID] = Counts{Txns: snd.sentTxns.Load(), Events: snd.sentEvents.Load(), Failures: snd.failures.Load()}
	}
	return out
}
