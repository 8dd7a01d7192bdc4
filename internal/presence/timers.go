package presence

import (
	"context"
	"time"

	"github.com/lattice-chat/lattice/storage"
)

// checkTimeout bounds the database work of a timer.
const checkTimeout = 30 * time.Second

// Syncing records that userID started a /sync with the set_presence parameter setPresence
// ("" is online) and returns the function to call when it ends. Following the spec's
// set_presence: "offline" leaves presence alone (and the sync does not keep the user
// online); "online" turns an offline user online (an unavailable one stays so: a sync is
// not activity, else an idle user would never stay idle); "unavailable" marks the user idle.
//
// A /sync only reads, so it must not fail because presence cannot be read or written (a full
// disk, a database that refuses writes): the error is logged and the sync goes on, with the
// user counted as syncing; the next sync tries again. Nothing is written when the state does
// not change.
func (s *Service) Syncing(ctx context.Context, userID, setPresence string) func() {
	if setPresence == Offline {
		return func() {}
	}
	u := s.entry(userID)
	u.mu.Lock()
	defer u.mu.Unlock()
	s.mu.Lock()
	u.syncing++
	stop(u.offline)
	s.mu.Unlock()
	done := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if u.syncing--; u.syncing == 0 {
			s.armOfflineLocked(userID, u)
		}
	}
	p, err := s.current(ctx, userID)
	if err != nil {
		s.log.Error("presence: read on sync", "user_id", userID, "err", err)
		return done
	}
	switch {
	case (setPresence == "" || setPresence == Online) && p.State == Offline:
		p.State, p.LastActiveTS = Online, s.now().UnixMilli()
	case setPresence == Unavailable && p.State != Unavailable:
		p.State = Unavailable
	default:
		s.armIdle(&p)
		return done
	}
	if err := s.store(ctx, p); err != nil {
		s.log.Error("presence: set on sync", "user_id", userID, "err", err)
		return done
	}
	s.armIdle(&p)
	return done
}

// armOfflineLocked (re)starts userID's offline timer. s.mu must be held.
func (s *Service) armOfflineLocked(userID string, u *user) {
	stop(u.offline)
	if s.closed {
		return
	}
	u.offline = s.afterFunc(s.cfg.OfflineAfter, func() { s.checkOffline(userID) })
}

// armIdle (re)starts the idle timer of an online user, due IdleAfter after their last
// activity; other states need none.
func (s *Service) armIdle(p *storage.Presence) {
	u := s.entry(p.UserID)
	s.mu.Lock()
	defer s.mu.Unlock()
	stop(u.idle)
	if s.closed || p.State != Online {
		return
	}
	due := time.UnixMilli(p.LastActiveTS).Add(s.cfg.IdleAfter).Sub(s.now())
	userID := p.UserID
	u.idle = s.afterFunc(max(due, 0), func() { s.checkIdle(userID) })
}

// checkIdle runs when userID's idle timer fires: an online user whose last activity is
// IdleAfter old becomes unavailable; one active since has the timer re-armed.
func (s *Service) checkIdle(userID string) {
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	u := s.entry(userID)
	u.mu.Lock()
	defer u.mu.Unlock()
	if s.isClosed() {
		return
	}
	p, err := s.current(ctx, userID)
	if err != nil {
		s.log.Error("presence: idle check", "user_id", userID, "err", err)
		return
	}
	if p.State != Online {
		return
	}
	if s.now().Sub(time.UnixMilli(p.LastActiveTS)) < s.cfg.IdleAfter {
		s.armIdle(&p)
		return
	}
	p.State = Unavailable
	if err := s.store(ctx, p); err != nil {
		s.log.Error("presence: mark idle", "user_id", userID, "err", err)
	}
}

// checkOffline runs when userID's offline timer fires: a user with no /sync in progress
// becomes offline.
func (s *Service) checkOffline(userID string) {
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	u := s.entry(userID)
	u.mu.Lock()
	defer u.mu.Unlock()
	s.mu.Lock()
	busy := s.closed || u.syncing > 0
	if !busy {
		stop(u.idle)
	}
	s.mu.Unlock()
	if busy {
		return
	}
	p, err := s.current(ctx, userID)
	if err != nil {
		s.log.Error("presence: offline check", "user_id", userID, "err", err)
		return
	}
	if p.State == Offline {
		return
	}
	p.State = Offline
	if err := s.store(ctx, p); err != nil {
		s.log.Error("presence: mark offline", "user_id", userID, "err", err)
	}
}

func (s *Service) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Content is the content of the m.presence event for p at now (also the body of GET
// /presence/{userId}/status). last_active_ago is computed at now, as the spec requires it
// to be up to date whenever it is given; currently_active is sent with online only, which
// this server keeps true for IdleAfter after the last activity.
func Content(p *storage.Presence, now time.Time) map[string]any {
	c := map[string]any{"presence": p.State}
	if p.LastActiveTS > 0 {
		c["last_active_ago"] = max(now.UnixMilli()-p.LastActiveTS, 0)
	}
	if p.State == Online {
		c["currently_active"] = true
	}
	if p.StatusMsg != "" {
		c["status_msg"] = p.StatusMsg
	}
	return c
}
