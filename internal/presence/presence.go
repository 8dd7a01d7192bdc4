// Package presence keeps users' presence, following the client-server API's "Presence"
// module: the state a user sets (online, unavailable, offline) with a status message, and
// the last time they were active. Every change is stored with a new position of the presence
// stream and wakes the /syncs of the users who share a room with them. Two kinds of timer
// change presence on their own, one per user, never a loop over users:
//   - idle: an online user with no activity for IdleAfter becomes unavailable;
//   - offline: a user with no /sync (with set_presence other than offline) in progress and
//     none for OfflineAfter becomes offline.
//
// The database is the source of truth; the timers are in memory and re-armed from it by
// Start, so a restart leaves no user online forever. The client API reports explicit changes
// and activity, the sync API reports syncs; both get the one *Service that cmd/lattice makes.
//
// It must not import clientapi, syncapi, roomserver or any HTTP package.
package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/lattice-chat/lattice/storage"
)

// The presence states of the spec.
const (
	Online      = "online"
	Unavailable = "unavailable"
	Offline     = "offline"
)

// Valid reports whether state is one of the spec's presence states.
func Valid(state string) bool {
	return state == Online || state == Unavailable || state == Offline
}

// Config holds the presence timeouts; zero values take the defaults.
type Config struct {
	IdleAfter    time.Duration // default 5 minutes, the spec's example
	OfflineAfter time.Duration // default 30 seconds after the last /sync ended
	// IsLocal reports whether a user is of this server (nil: everyone is). Only local users'
	// presence has timers and is published to other servers; remote users' presence is
	// what their servers say.
	IsLocal func(userID string) bool
}

// Waker tells /sync that a stream reached a position, waking the long-polls of users.
type Waker interface {
	Wake(stream storage.Stream, pos int64, users []string)
}

// stopper is a timer that can be stopped (*time.Timer).
type stopper interface{ Stop() bool }

// Service keeps presence. Lock order: a user's mu, then Service.mu.
type Service struct {
	db    *storage.DB
	waker Waker
	log   *slog.Logger
	cfg   Config
	// now and afterFunc are time.Now and time.AfterFunc; tests replace them.
	now       func() time.Time
	afterFunc func(d time.Duration, f func()) stopper

	mu     sync.Mutex // guards users, the syncing, lastSync and timer fields of each user, closed
	users  map[string]*user
	closed bool

	publish func(ctx context.Context, userID string) // set before Start; nil: nothing to publish
}

// SetPublisher makes every change of a local user's presence (explicit, by /sync, or by the
// idle and offline timers) call publish, which tells other servers (an m.presence EDU).
func (s *Service) SetPublisher(publish func(ctx context.Context, userID string)) {
	s.publish = publish
}

func (s *Service) isLocal(userID string) bool {
	return s.cfg.IsLocal == nil || s.cfg.IsLocal(userID)
}

// user is the in-memory side of one user's presence.
type user struct {
	// mu serialises the read-modify-write of the user's stored presence. Held over database
	// I/O, so it is never taken while Service.mu is held.
	mu      sync.Mutex
	last    *storage.Presence // the stored presence as last read or written; guarded by mu
	syncing int               // /sync requests in progress that affect presence
	idle    stopper           // fires IdleAfter after the last activity while online
	offline stopper           // fires OfflineAfter after the last /sync ended
}

// New returns the presence service; Start arms the timers of users left online.
func New(cfg Config, db *storage.DB, waker Waker, log *slog.Logger) *Service {
	if cfg.IdleAfter <= 0 {
		cfg.IdleAfter = 5 * time.Minute
	}
	if cfg.OfflineAfter <= 0 {
		cfg.OfflineAfter = 30 * time.Second
	}
	return &Service{
		db: db, waker: waker, log: log, cfg: cfg, now: time.Now, users: map[string]*user{},
		afterFunc: func(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) },
	}
}

// Start arms the timers of every user whose stored presence is not offline: after a restart
// they have OfflineAfter to sync again.
func (s *Service) Start(ctx context.Context) error {
	ps, err := s.db.PresenceNotOffline(ctx)
	if err != nil {
		return err
	}
	for _, p := range ps {
		if !s.isLocal(p.UserID) {
			continue // a remote user's server tells us when they go offline
		}
		u := s.entry(p.UserID)
		s.mu.Lock()
		s.armOfflineLocked(p.UserID, u)
		s.mu.Unlock()
		s.armIdle(p)
	}
	return nil
}

// Close stops every timer.
func (s *Service) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, u := range s.users {
		stop(u.idle)
		stop(u.offline)
	}
	return nil
}

func stop(t stopper) {
	if t != nil {
		t.Stop()
	}
}

// entry returns the in-memory state of userID, creating it. Entries are kept: there is one
// per local user who ever had presence, a few hundred bytes each.
func (s *Service) entry(userID string) *user {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[userID]
	if u == nil {
		u = &user{}
		s.users[userID] = u
	}
	return u
}

// current returns the stored presence of userID; a user with none is offline.
// The caller holds the user's mu; the presence read from the database is remembered there,
// so that a /sync does not read it again (this process is the only writer of its users'
// presence).
func (s *Service) current(ctx context.Context, userID string) (storage.Presence, error) {
	u := s.entry(userID)
	if u.last != nil {
		return *u.last, nil
	}
	p, err := s.db.Presence(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		p, err = &storage.Presence{UserID: userID, State: Offline}, nil
	} else if err != nil {
		return storage.Presence{}, err
	}
	u.last = p
	return *p, nil
}

// store commits p with a new stream position, then wakes userID and everyone sharing a
// room with them.
func (s *Service) store(ctx context.Context, p storage.Presence) error {
	var pos int64
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		var err error
		pos, err = tx.SetPresence(ctx, p)
		return err
	})
	if err != nil {
		return err
	}
	p.StreamPos = pos
	s.entry(p.UserID).last = &p // the caller holds the user's mu
	if s.publish != nil && s.isLocal(p.UserID) {
		s.publish(ctx, p.UserID)
	}
	if s.waker == nil {
		return nil
	}
	users, err := s.db.RoomPeers(ctx, p.UserID)
	if err != nil {
		// The change is committed: wake its owner at least, who will see it.
		s.log.Error("presence: list room peers", "user_id", p.UserID, "err", err)
	}
	s.waker.Wake(storage.StreamPresence, pos, append(users, p.UserID))
	return nil
}

// Set handles an explicit change (PUT /presence/{userId}/status): state and the status
// message replace the stored ones, and setting online counts as activity.
func (s *Service) Set(ctx context.Context, userID, state, statusMsg string) error {
	if !Valid(state) {
		return fmt.Errorf("invalid presence state %q", state)
	}
	u := s.entry(userID)
	u.mu.Lock()
	defer u.mu.Unlock()
	p, err := s.current(ctx, userID)
	if err != nil {
		return err
	}
	p.State, p.StatusMsg = state, statusMsg
	if state == Online {
		p.LastActiveTS = s.now().UnixMilli()
	}
	if err := s.store(ctx, p); err != nil {
		return err
	}
	if state == Offline {
		s.mu.Lock()
		stop(u.idle)
		stop(u.offline)
		s.mu.Unlock()
		return nil
	}
	s.mu.Lock()
	if u.syncing == 0 {
		s.armOfflineLocked(userID, u)
	}
	s.mu.Unlock()
	s.armIdle(&p)
	return nil
}

// activeWriteInterval is how often the stored last-active time of an online user moves.
const activeWriteInterval = 30 * time.Second

// Active records activity of userID (a message, a receipt, a read marker): it moves the last active
// time and turns unavailable into online, as the spec's "Idle timeout" says. The stored time
// of an online user moves at most once per activeWriteInterval. An online user
// is currently active, so only the stored time moves, without waking anyone; an offline one
// stays offline (they may be hiding).
func (s *Service) Active(ctx context.Context, userID string) error {
	u := s.entry(userID)
	u.mu.Lock()
	defer u.mu.Unlock()
	p, err := s.current(ctx, userID)
	if err != nil {
		return err
	}
	now := s.now().UnixMilli()
	if p.State == Online && now-p.LastActiveTS < activeWriteInterval.Milliseconds() {
		// Active moments ago: the stored time is close enough, and a message burst must not
		// cost a write each.
		return nil
	}
	p.LastActiveTS = now
	switch p.State {
	case Unavailable:
		p.State = Online
		if err := s.store(ctx, p); err != nil {
			return err
		}
	case Online:
		if err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
			return tx.TouchPresence(ctx, userID, p.LastActiveTS)
		}); err != nil {
			return err
		}
		u.last = &p
	default:
		return nil
	}
	s.armIdle(&p)
	return nil
}
