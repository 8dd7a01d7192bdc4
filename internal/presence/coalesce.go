package presence

import (
	"sync"
	"time"

	"github.com/lattice-chat/lattice/storage"
)

// WakeDelay is how long Coalescer gathers presence wake-ups before passing them on.
const WakeDelay = 250 * time.Millisecond

// Coalescer passes every wake-up to the next Waker at once, except presence's: those it
// gathers for WakeDelay and passes as one, for the newest position and every user woken in
// between. Each change of presence wakes everyone sharing a room with the user, so when the
// members of a room of 2,000 come online together (a deploy, the morning), every one of them
// would otherwise be woken by each of the others: millions of /sync answers carrying one
// presence event each. Gathered, each member is woken a few times a second at most, and gets
// the changes together. Presence is a hint that a quarter of a second does not spoil. The
// notifier's position for the stream moves at once (a wake-up of nobody), so that any /sync
// made after the change, woken or not, reads it.
type Coalescer struct {
	next  Waker
	delay time.Duration

	mu    sync.Mutex // guards pos, users and armed
	pos   int64
	users map[string]struct{}
	armed bool
}

// NewCoalescer returns a Coalescer in front of next; a delay of 0 passes everything at once.
func NewCoalescer(next Waker, delay time.Duration) *Coalescer {
	return &Coalescer{next: next, delay: delay, users: map[string]struct{}{}}
}

// Wake implements Waker.
func (c *Coalescer) Wake(stream storage.Stream, pos int64, users []string) {
	if stream != storage.StreamPresence || c.delay <= 0 {
		c.next.Wake(stream, pos, users)
		return
	}
	c.next.Wake(stream, pos, nil)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pos = max(c.pos, pos)
	for _, u := range users {
		c.users[u] = struct{}{}
	}
	if !c.armed {
		c.armed = true
		time.AfterFunc(c.delay, c.flush)
	}
}

// flush passes on what was gathered.
func (c *Coalescer) flush() {
	c.mu.Lock()
	pos, gathered := c.pos, c.users
	c.users, c.armed = map[string]struct{}{}, false
	c.mu.Unlock()
	users := make([]string, 0, len(gathered))
	for u := range gathered {
		users = append(users, u)
	}
	c.next.Wake(storage.StreamPresence, pos, users)
}
