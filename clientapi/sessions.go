package clientapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
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

	// key, when set (a cluster), signs the IDs issued with their time, so that another
	// process of the cluster, which did not issue one, can still check it (signedAt).
	key []byte

	mu     sync.Mutex // guards issued, order and taken
	issued map[string]time.Time
	taken  map[string]time.Time // signed IDs taken here, by issue time (a cluster)
	order  []string             // IDs by issue time; may hold IDs already taken
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
	if s.key != nil {
		id += "." + strconv.FormatInt(now.UnixMilli(), 36)
		id += "." + s.mac(id)
	}
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
	if s.key == nil {
		return ok && s.now().Sub(t) <= s.ttl
	}
	// Signed (a cluster): issued here or by another process, good once on this process
	// (another process could take it once more within ttl; a shared-secret registration
	// repeated that way finds its user taken).
	if _, done := s.taken[id]; done {
		return false
	}
	if !ok {
		if t, ok = s.signedAt(id); !ok {
			return false
		}
	}
	now := s.now()
	if now.Sub(t) > s.ttl {
		return false
	}
	if s.taken == nil || len(s.taken) >= s.max {
		for k, at := range s.taken {
			if now.Sub(at) > s.ttl {
				delete(s.taken, k)
			}
		}
		if s.taken == nil || len(s.taken) >= s.max {
			s.taken = map[string]time.Time{} // only IDs within ttl: at worst one more use
		}
	}
	s.taken[id] = t
	return true
}

// mac is the signature of a signed ID's first two parts.
func (s *sessionIDs) mac(idAndTime string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(idAndTime))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// signedAt returns the issue time of a signed ID whose signature holds.
func (s *sessionIDs) signedAt(id string) (time.Time, bool) {
	i := strings.LastIndexByte(id, '.')
	if i < 0 || !hmac.Equal([]byte(s.mac(id[:i])), []byte(id[i+1:])) {
		return time.Time{}, false
	}
	j := strings.LastIndexByte(id[:i], '.')
	ms, err := strconv.ParseInt(id[j+1:i], 36, 64)
	if j < 0 || err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
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
