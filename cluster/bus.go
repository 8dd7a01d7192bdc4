package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lattice-chat/lattice/storage"
)

// Channel is the PostgreSQL notification channel of the stream wake-ups.
const Channel = "lattice_streams"

// maxPayload keeps a notification under PostgreSQL's 8000-byte limit; a wake-up naming more
// users than fit wakes every long-poll of the other processes instead.
const maxPayload = 7000

// Notifier is the /sync notifier of this process (syncapi.Notifier).
type Notifier interface {
	// WakeFromPeer records that another process committed stream up to pos and wakes the
	// long-polls of users, or all of them.
	WakeFromPeer(stream storage.Stream, pos int64, users []string, all bool)
}

// shared are the streams whose positions live in the database, and so mean the same on
// every process. Typing is kept in each process's memory: its positions are not shared.
var shared = map[storage.Stream]bool{
	storage.StreamPDU: true, storage.StreamAccountData: true, storage.StreamReceipts: true,
	storage.StreamToDevice: true, storage.StreamDeviceLists: true, storage.StreamPresence: true,
}

// message is one notification: instance I's stream S reached position P, for users U (or
// all users when A); or, without S, instance I committed a write of cached data (C).
//
// Every notification, whatever it says, first has the receiver recheck its caches'
// generations (storage.DB.RecheckCaches): a write that wakes a long-poll (a join, a new
// device) has often changed cached data too (memberships, device keys), which the woken
// /sync must not read from a cache that has not seen it yet.
type message struct {
	I string         `json:"i"`
	C bool           `json:"c,omitempty"`
	S storage.Stream `json:"s,omitempty"`
	P int64          `json:"p"`
	U []string       `json:"u,omitempty"`
	A bool           `json:"a,omitempty"`
	// T are typing changes, which live in each process's memory: every process applies
	// those of the others.
	T []typingChange `json:"t,omitempty"`
}

// typingChange is one typing.Typing.Set.
type typingChange struct {
	Room    string `json:"r"`
	User    string `json:"u"`
	Typing  bool   `json:"on,omitempty"`
	Timeout int64  `json:"ms,omitempty"`
}

// Typing is this process's typing state (internal/typing).
type Typing interface {
	SetFromPeer(roomID, userID string, typing bool, timeout time.Duration)
}

// maxTypingBatch bounds the typing changes of one notification (each under 600 bytes: user
// and room IDs are at most 255 bytes each).
const maxTypingBatch = 10

// pending is what is waiting to be sent for one stream: the newest position and the users
// of every wake-up since the last send.
type pending struct {
	pos   int64
	users map[string]struct{}
	all   bool
}

// Bus sends this process's stream wake-ups to the other processes of the cluster and
// hands theirs to the local notifier. Publish never blocks: wake-ups are merged while a
// send is in flight, so a burst of commits costs a few notifications, not one each.
type Bus struct {
	db       *storage.DB
	notifier Notifier
	// resync reads every stream's position from the database and wakes every long-poll;
	// run after (re)connecting the listener, since notifications may have been missed.
	resync func(ctx context.Context) error
	log    *slog.Logger
	id     string // this process, to ignore its own notifications

	mu      sync.Mutex
	queue   map[storage.Stream]*pending
	caches  bool // a write of cached data waits to be announced
	typing  []typingChange
	typers  atomic.Pointer[Typing]
	kick    chan struct{}
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	ready   chan struct{} // closed once the listener first listens
	readyOK sync.Once
}

// NewBus returns a bus between db's processes for notifier. resync must advance the
// notifier to the database's positions and wake every long-poll.
func NewBus(db *storage.DB, notifier Notifier, resync func(ctx context.Context) error, log *slog.Logger) *Bus {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &Bus{
		db: db, notifier: notifier, resync: resync, log: log, id: hex.EncodeToString(b),
		queue: map[storage.Stream]*pending{}, kick: make(chan struct{}, 1), ready: make(chan struct{}),
	}
}

// Start starts listening and sending; it returns once this process listens (or ctx ends).
func (b *Bus) Start(ctx context.Context) error {
	ctx, b.cancel = context.WithCancel(context.WithoutCancel(ctx))
	b.wg.Add(2)
	go b.listen(ctx)
	go b.send(ctx)
	select {
	case <-b.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return nil // the listener keeps trying; resync will catch up
	}
}

// Close stops the bus after sending what is queued.
func (b *Bus) Close() {
	if b.cancel == nil {
		return
	}
	b.flush(context.Background())
	b.cancel()
	b.wg.Wait()
}

// Publish queues a wake-up of the other processes: stream reached pos here, for users.
func (b *Bus) Publish(stream storage.Stream, pos int64, users []string) {
	if !shared[stream] {
		return
	}
	b.mu.Lock()
	p := b.queue[stream]
	if p == nil {
		p = &pending{users: map[string]struct{}{}}
		b.queue[stream] = p
	}
	p.pos = max(p.pos, pos)
	if !p.all {
		for _, u := range users {
			p.users[u] = struct{}{}
		}
	}
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// SetTyping has the other processes' typing changes applied to typers.
func (b *Bus) SetTyping(typers Typing) { b.typers.Store(&typers) }

// PublishTyping queues a typing change of this process for the others.
func (b *Bus) PublishTyping(roomID, userID string, typing bool, timeout time.Duration) {
	b.mu.Lock()
	b.typing = append(b.typing, typingChange{Room: roomID, User: userID, Typing: typing, Timeout: timeout.Milliseconds()})
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// CachesChanged queues a notice that this process committed a write of cached data
// (storage.DB.SetGenerationsMoved), so that the other processes recheck their caches at once
// rather than within storage's recheck interval.
func (b *Bus) CachesChanged() {
	b.mu.Lock()
	b.caches = true
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// send sends the queued wake-ups whenever there are some.
func (b *Bus) send(ctx context.Context) {
	defer b.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
		}
		b.flush(ctx)
	}
}

// flush sends what is queued now, one notification per stream.
func (b *Bus) flush(ctx context.Context) {
	b.mu.Lock()
	q, caches, typing := b.queue, b.caches, b.typing
	b.queue, b.caches, b.typing = map[storage.Stream]*pending{}, false, nil
	b.mu.Unlock()
	for len(typing) > 0 {
		n := min(len(typing), maxTypingBatch)
		b.notify(ctx, message{I: b.id, T: typing[:n]})
		typing = typing[n:]
	}
	if caches && len(q) == 0 {
		// A stream notification has the receivers recheck their caches anyway.
		b.notify(ctx, message{I: b.id, C: true})
	}
	for stream, p := range q {
		m := message{I: b.id, S: stream, P: p.pos, A: p.all}
		if !p.all {
			m.U = make([]string, 0, len(p.users))
			for u := range p.users {
				m.U = append(m.U, u)
			}
		}
		if payload, _ := json.Marshal(m); len(payload) > maxPayload {
			m.U, m.A = nil, true
		}
		b.notify(ctx, m)
	}
}

// notify sends one notification. One that cannot be sent is logged: the other processes'
// long-polls then wait for their timeout or the next wake-up, and lose nothing.
func (b *Bus) notify(ctx context.Context, m message) {
	payload, _ := json.Marshal(m)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.db.Notify(sctx, Channel, string(payload)); err != nil && ctx.Err() == nil {
		b.log.Warn("cluster: notify", "stream", m.S, "err", err)
	}
}

// listen hands the other processes' wake-ups to the notifier, listening again after a
// lost connection and catching up on what it may have missed.
func (b *Bus) listen(ctx context.Context) {
	defer b.wg.Done()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := b.db.Listen(ctx, Channel, func() {
			if err := b.resync(ctx); err != nil {
				b.log.Warn("cluster: resync", "err", err)
			}
			b.readyOK.Do(func() { close(b.ready) })
			backoff = 100 * time.Millisecond
		}, b.receive)
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("cluster: listener lost, listening again", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// receive handles one notification.
func (b *Bus) receive(payload string) {
	var m message
	if err := json.Unmarshal([]byte(payload), &m); err != nil || m.I == b.id {
		return
	}
	b.db.RecheckCaches()
	if typers := b.typers.Load(); typers != nil {
		for _, c := range m.T {
			(*typers).SetFromPeer(c.Room, c.User, c.Typing, time.Duration(c.Timeout)*time.Millisecond)
		}
	}
	if shared[m.S] {
		b.notifier.WakeFromPeer(m.S, m.P, m.U, m.A)
	}
}
