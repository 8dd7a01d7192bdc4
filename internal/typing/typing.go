// Package typing keeps the typing notifications of rooms in memory, each with its expiry, and
// numbers every change of a room's set of typers with a position of the typing stream. An
// expiry is a timer per typing user, never a loop over rooms. The client API sets typing,
// the sync API reads it; both get the one *Typing that cmd/lattice makes.
//
// Typing notifications are ephemeral (the spec's servers "do not remember" them): nothing is
// persisted, and a restart forgets who was typing. So that since-tokens stay ordered across
// a restart, positions start at the wall clock in milliseconds rather than at zero.
//
// It must not import clientapi, syncapi, roomserver or any HTTP package.
package typing

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/lattice-chat/lattice/storage"
)

// Members lists the users joined to a room: those to wake when its typers change.
type Members interface {
	JoinedMembers(ctx context.Context, roomID string) ([]string, error)
}

// Waker tells /sync that a stream reached a position, waking the long-polls of users.
type Waker interface {
	Wake(stream storage.Stream, pos int64, users []string)
}

// Timeouts of a typing notification.
const (
	DefaultTimeout = 30 * time.Second
	MaxTimeout     = 120 * time.Second
)

// Typing is the typing state of every room.
type Typing struct {
	members Members
	waker   Waker
	log     *slog.Logger
	// afterFunc is time.AfterFunc; tests replace it to fire expiries themselves.
	afterFunc func(d time.Duration, f func()) stopper

	// publish, when set (a cluster), is told of each local Set, for the other processes.
	publish func(roomID, userID string, typing bool, timeout time.Duration)

	mu     sync.Mutex // guards pos, rooms, gen and closed
	pos    int64
	rooms  map[string]*room
	gen    uint64 // the generation of the newest expiry timer
	closed bool
}

// stopper is a timer that can be stopped (*time.Timer).
type stopper interface{ Stop() bool }

// room is the typing state of one room. A room whose set became empty is kept, with the
// position of that change, so that a later sync can still report the now empty set.
type room struct {
	pos   int64            // the position of the last change of the set of typers
	users map[string]typer // the typing users
}

// typer is one typing user's expiry timer; gen tells a stale timer from the current one.
type typer struct {
	timer stopper
	gen   uint64
}

// New returns the typing state. Its positions start at the wall clock in milliseconds, and
// waker is told so at once; after that it is told about each change, with the room's
// joined members.
func New(members Members, waker Waker, log *slog.Logger) *Typing {
	t := &Typing{
		members: members, waker: waker, log: log, pos: time.Now().UnixMilli(), rooms: map[string]*room{},
		afterFunc: func(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) },
	}
	if waker != nil {
		waker.Wake(storage.StreamTyping, t.pos, nil)
	}
	return t
}

// Pos returns the newest typing position.
func (t *Typing) Pos() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pos
}

// SetPublisher has fn told of every Set of this process, so that the other processes of a
// cluster apply it too (SetFromPeer). It is called before the server serves, and makes the
// positions follow the wall clock in milliseconds (each change at least one more than the
// last), so that a since-token's typing position from one process means about the same time
// on another. fn must not block.
func (t *Typing) SetPublisher(fn func(roomID, userID string, typing bool, timeout time.Duration)) {
	t.publish = fn
}

// SetFromPeer applies a Set made on another process of the cluster, with this process's
// own expiry timer and position; it is not published again.
func (t *Typing) SetFromPeer(roomID, userID string, typing bool, timeout time.Duration) {
	t.set(roomID, userID, typing, timeout)
}

// Set marks userID as typing in roomID for timeout (DefaultTimeout when zero or less, at
// most MaxTimeout), or as not typing. The caller checks that the user is joined. When the
// set of typers changed, the room's members are woken.
func (t *Typing) Set(roomID, userID string, typing bool, timeout time.Duration) {
	t.set(roomID, userID, typing, timeout)
	if t.publish != nil {
		t.publish(roomID, userID, typing, timeout)
	}
}

func (t *Typing) set(roomID, userID string, typing bool, timeout time.Duration) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	timeout = min(timeout, MaxTimeout)
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	r := t.rooms[roomID]
	if r == nil {
		r = &room{users: map[string]typer{}}
		t.rooms[roomID] = r
	}
	old, was := r.users[userID]
	if was {
		old.timer.Stop()
		delete(r.users, userID)
	}
	if typing {
		t.gen++
		gen := t.gen
		r.users[userID] = typer{gen: gen, timer: t.afterFunc(timeout, func() { t.expire(roomID, userID, gen) })}
	}
	pos := t.changedLocked(r, was != typing)
	t.mu.Unlock()
	t.wake(roomID, pos)
}

// expire ends userID's typing in roomID when the timer of generation gen is still theirs.
func (t *Typing) expire(roomID, userID string, gen uint64) {
	t.mu.Lock()
	r := t.rooms[roomID]
	if t.closed || r == nil || r.users[userID].gen != gen {
		t.mu.Unlock()
		return
	}
	delete(r.users, userID)
	pos := t.changedLocked(r, true)
	t.mu.Unlock()
	t.wake(roomID, pos)
}

// changedLocked gives r a new position when changed, returning it (0 when unchanged).
func (t *Typing) changedLocked(r *room, changed bool) int64 {
	if !changed {
		return 0
	}
	t.pos++
	if t.publish != nil {
		t.pos = max(t.pos, time.Now().UnixMilli())
	}
	r.pos = t.pos
	return t.pos
}

// wake tells the room's members about a change at pos (nothing when pos is 0). It runs
// without t.mu: looking up members takes the room's lock in roomserver.
func (t *Typing) wake(roomID string, pos int64) {
	if pos == 0 || t.waker == nil {
		return
	}
	var users []string
	if t.members != nil {
		var err error
		users, err = t.members.JoinedMembers(context.Background(), roomID)
		if err != nil {
			t.log.Error("typing: list room members", "room_id", roomID, "err", err)
		}
	}
	t.waker.Wake(storage.StreamTyping, pos, users)
}

// Changed returns the current typers of roomID, sorted, and whether the set changed after
// since and at or before upTo. A change after upTo is left for the next sync, whose since
// will be upTo.
func (t *Typing) Changed(roomID string, since, upTo int64) ([]string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.rooms[roomID]
	if r == nil || r.pos <= since || r.pos > upTo {
		return nil, false
	}
	users := make([]string, 0, len(r.users))
	for u := range r.users {
		users = append(users, u)
	}
	slices.Sort(users)
	return users, true
}

// Close stops every expiry timer.
func (t *Typing) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for _, r := range t.rooms {
		for _, u := range r.users {
			u.timer.Stop()
		}
	}
	return nil
}
