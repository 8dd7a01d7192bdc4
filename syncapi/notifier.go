package syncapi

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lattice-chat/lattice/storage"
)

// Notifier tracks the newest stream positions and wakes exactly the long-polling /sync
// requests of the users a change affects. There is no polling loop.
type Notifier struct {
	mu      sync.Mutex // guards pos and waiters
	pos     Token
	waiters map[string]map[chan struct{}]struct{} // user ID -> channels to close

	polling atomic.Int64 // long-polls waiting in wait, for LongPolls

	// publish, when set (a cluster), is told of every change Wake records, for the other
	// processes (package cluster).
	publish atomic.Pointer[func(stream storage.Stream, pos int64, users []string)]
	catchUp atomic.Pointer[func(ctx context.Context) (map[storage.Stream]int64, error)]
}

// SetCatchUp has CatchUp read the committed stream positions with fn (a cluster: storage's
// CommittedPositions).
func (n *Notifier) SetCatchUp(fn func(ctx context.Context) (map[storage.Stream]int64, error)) {
	n.catchUp.Store(&fn)
}

// CatchUp, in a cluster, advances the positions to those committed in the database before a
// /sync reads them, so that a write another process acknowledged a moment ago is served even
// if its notification is still on its way. It wakes nobody. Outside a cluster it does
// nothing: every commit reaches the notifier before it is acknowledged.
func (n *Notifier) CatchUp(ctx context.Context) error {
	fn := n.catchUp.Load()
	if fn == nil {
		return nil
	}
	pos, err := (*fn)(ctx)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, s := range tokenStreams {
		if s != storage.StreamTyping {
			n.pos.Advance(s, pos[s])
		}
	}
	return nil
}

// SetPublisher has fn told, after each local Wake, of the stream position reached and the
// users woken, so that it can wake the other processes of a cluster. fn must not block.
func (n *Notifier) SetPublisher(fn func(stream storage.Stream, pos int64, users []string)) {
	n.publish.Store(&fn)
}

// Resync advances every stream to t (read from the database) and wakes every long-poll: a
// cluster process does so after (re)connecting to the other processes' notifications, some
// of which it may have missed. Typing, kept in this process, is left as it is.
func (n *Notifier) Resync(t Token) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, s := range tokenStreams {
		if s != storage.StreamTyping {
			n.pos.Advance(s, t.Get(s))
		}
	}
	for u := range n.waiters {
		n.wakeLocked(u)
	}
}

// WakeFromPeer records a change another process of the cluster committed: the stream reached
// pos there, and every position up to pos is committed (positions commit in order, see
// storage.NextStreamPos and LockEventStream). It wakes the long-polls of users, or of every
// user when all is set. It is not published again.
func (n *Notifier) WakeFromPeer(stream storage.Stream, pos int64, users []string, all bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.pos.Advance(stream, pos)
	if all {
		for u := range n.waiters {
			n.wakeLocked(u)
		}
		return
	}
	for _, u := range users {
		n.wakeLocked(u)
	}
}

// LongPolls returns how many /sync (and sliding sync) requests are waiting for news now.
func (n *Notifier) LongPolls() int64 { return n.polling.Load() }

// NewNotifier returns a notifier starting at pos.
func NewNotifier(pos Token) *Notifier {
	return &Notifier{pos: pos, waiters: make(map[string]map[chan struct{}]struct{})}
}

// Current returns the newest positions.
func (n *Notifier) Current() Token {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pos
}

// EventsCommitted implements roomserver.Listener.
func (n *Notifier) EventsCommitted(pos int64, users []string) {
	n.Wake(storage.StreamPDU, pos, users)
}

// Wake records that stream reached pos and wakes the long-polls of users. It is how the
// other components (account data, receipts, typing, to-device, device lists, presence) tell
// /sync about a change; it must be called after the change is committed.
func (n *Notifier) Wake(stream storage.Stream, pos int64, users []string) {
	n.mu.Lock()
	n.pos.Advance(stream, pos)
	for _, u := range users {
		n.wakeLocked(u)
	}
	n.mu.Unlock()
	if p := n.publish.Load(); p != nil {
		(*p)(stream, pos, users)
	}
}

func (n *Notifier) wakeLocked(userID string) {
	for ch := range n.waiters[userID] {
		close(ch)
	}
	delete(n.waiters, userID)
}

// listen returns a channel closed at the next change for userID, and a function to stop
// listening. The position at the time of registering is returned too, so that a caller can
// tell whether something happened between its last look and the registration.
func (n *Notifier) listen(userID string) (<-chan struct{}, Token, func()) {
	ch := make(chan struct{})
	n.mu.Lock()
	if n.waiters[userID] == nil {
		n.waiters[userID] = make(map[chan struct{}]struct{})
	}
	n.waiters[userID][ch] = struct{}{}
	pos := n.pos
	n.mu.Unlock()
	return ch, pos, func() {
		n.mu.Lock()
		if set := n.waiters[userID]; set != nil {
			if _, ok := set[ch]; ok {
				delete(set, ch)
				if len(set) == 0 {
					delete(n.waiters, userID)
				}
			}
		}
		n.mu.Unlock()
	}
}

// wait blocks until userID is woken, the timeout passes or ctx ends.
func (n *Notifier) wait(ctx context.Context, ch <-chan struct{}, timeout time.Duration) bool {
	n.polling.Add(1)
	defer n.polling.Add(-1)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}
