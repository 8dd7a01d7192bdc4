package clientapi

import (
	"sync"
	"time"

	"github.com/lattice-chat/lattice/internal/config"
)

// sessionIDs hands out random IDs that are valid for a fixed time, for user-interactive
// authentication sessions and shared-secret registration nonces. They live only in memory:
// a lost ID means the client starts again, as the spec allows.
//
// Anyone may ask for one without authenticating, so the set is bounded: every ID lives for
// the same ttl, so IDs expire in the order they were issued and expiry pops the front of a
// queue (no scan of the whole set); past max IDs the oldest is dropped.
type sessionIDs struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu     sync.Mutex // guards issued and order
	issued map[string]time.Time
	order  []string // IDs by issue time; may hold IDs already taken
}

func newSessionIDs(ttl time.Duration, max int) *sessionIDs {
	return &sessionIDs{ttl: ttl, max: max, now: time.Now, issued: make(map[string]time.Time)}
}

// issue returns a new ID.
func (s *sessionIDs) issue() string {
	id := config.RandomSecret(18)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.expireLocked(now)
	for len(s.issued) >= s.max {
		s.dropOldestLocked()
	}
	s.issued[id] = now
	s.order = append(s.order, id)
	return id
}

// take reports whether id was issued and has not expired, and forgets it: an ID is good once.
func (s *sessionIDs) take(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.issued[id]
	delete(s.issued, id)
	return ok && s.now().Sub(t) <= s.ttl
}

// has reports whether id was issued and has not expired, keeping it.
func (s *sessionIDs) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.issued[id]
	return ok && s.now().Sub(t) <= s.ttl
}

// expireLocked drops the IDs issued more than ttl ago, oldest first.
func (s *sessionIDs) expireLocked(now time.Time) {
	for len(s.order) > 0 {
		t, ok := s.issued[s.order[0]]
		if ok && now.Sub(t) <= s.ttl {
			return
		}
		s.dropOldestLocked()
	}
}

func (s *sessionIDs) dropOldestLocked() {
	delete(s.issued, s.order[0])
	s.order[0] = ""
	s.order = s.order[1:]
	// Reallocate now and then, so the queue's backing array does not grow without end.
	if cap(s.order) > 4*s.max && len(s.order) < s.max {
		s.order = append([]string(nil), s.order...)
	}
}

// size returns how many IDs are held (for tests).
func (s *sessionIDs) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.issued)
}
