// Package roomserver owns the room event DAG: it is the only writer of room events and state.
// Every event enters through one input path and is processed in order within its room, under
// that room's lock; different rooms proceed in parallel. It imports storage and
// gomatrixserverlib, and no HTTP or API package.
package roomserver

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// Listener is told about committed events. It must not block.
type Listener interface {
	// EventsCommitted reports that the room event stream reached pos; users are the local
	// users whose view of the room changed (its joined and invited members and the target
	// of a membership change).
	EventsCommitted(pos int64, users []string)
}

// Outbound is told which remote servers have new events queued for them (the federation
// sender). It must not block.
type Outbound interface {
	Wake(destination spec.ServerName)
}

// Config is what the roomserver needs to know about its server.
type Config struct {
	ServerName     spec.ServerName
	KeyID          gomatrixserverlib.KeyID
	PrivateKey     ed25519.PrivateKey
	DefaultVersion gomatrixserverlib.RoomVersion
	// Outbound, when federation is on, sends queued events to the other servers in a room;
	// nil when it is off (nothing is queued then).
	Outbound Outbound
	// InputWaited, when not nil, is told how long each input waited for its room's lane
	// (the metrics). It must be cheap and not block.
	InputWaited func(time.Duration)
	// ResyncBatchSize and ResyncBatchDelay shape the resync of partial state rooms: events
	// fetched and stored per batch (0: resyncBatchSize) and a pause before each batch. The
	// pause exists for tests only (to observe a room while its resync runs, and to restart
	// during it); it is 0 in production.
	ResyncBatchSize  int
	ResyncBatchDelay time.Duration
	// Cluster is set when several processes serve the database (PostgreSQL): each room's
	// input is then serialised across them by a lock in the database, and a room another
	// process wrote to since this one last held it is read again (room.acquire).
	Cluster bool
}

// Server is the roomserver.
type Server struct {
	cfg      Config
	db       *storage.DB
	log      *slog.Logger
	listener Listener
	now      func() time.Time

	mu    sync.Mutex       // guards rooms
	rooms map[string]*room // loaded rooms by room ID

	keys      *stateKeys
	snapshots *lru[int64, *snapshotEntry]        // expanded state snapshots by NID
	pdus      *lru[int64, gomatrixserverlib.PDU] // parsed events by NID, for auth
	push      pushCache                          // users' push rules, for push actions at commit (push.go)
	remote    Remote                             // other servers; nil when federation is off

	lastCreate atomic.Int64 // the timestamp (ms) of the last create event built (create.go)

	resyncs resyncs // background resyncs of partial state rooms (resync.go)
}

// maxCachedStateEntries bounds the expanded state snapshots the cache holds by their entries
// in all (about 30 MB): a room of 50,000 members has a snapshot for each membership change,
// each of up to 50,000 entries, and 4,096 of them would take gigabytes. Direct chats and
// small groups still keep their 4,096 snapshots.
const maxCachedStateEntries = 1 << 20

// New returns a roomserver writing to db and telling listener about new events.
func New(cfg Config, db *storage.DB, listener Listener, log *slog.Logger) *Server {
	return &Server{
		cfg:       cfg,
		db:        db,
		log:       log,
		listener:  listener,
		now:       time.Now,
		rooms:     make(map[string]*room),
		keys:      newStateKeys(),
		snapshots: newWeightedLRU[int64](4096, maxCachedStateEntries, func(e *snapshotEntry) int { return len(e.state) + 1 }),
		pdus:      newLRU[int64, gomatrixserverlib.PDU](20000),
	}
}

// ServerName returns the name of this server.
func (s *Server) ServerName() spec.ServerName { return s.cfg.ServerName }

// DB returns the database the roomserver writes to, for read-side queries.
func (s *Server) DB() *storage.DB { return s.db }

// room is the in-memory view of a room's head: everything needed to build the next event.
// The roomserver is the only writer of rooms, so this view is kept in step with the database
// by every commit. Lock order: room.mu before Server.mu is never taken; Server.mu is only
// held to look rooms up.
type room struct {
	mu sync.Mutex // serialises input to the room; guards every field below

	loaded      bool
	nid         int64
	id          string
	version     gomatrixserverlib.IRoomVersion
	snapshot    int64           // current state snapshot NID
	chainLen    int             // delta-chain length of snapshot
	state       map[int64]int64 // current state: state key NID -> event NID
	extremities []extremity
	maxDepth    int64
	members     map[string]string // user ID -> current membership
	// partial is the room's partial state row while this server joined it with partial
	// state and the resync has not completed (resync.go); nil otherwise.
	partial *storage.PartialStateRoom
	// pushCovered are the users whose push span is open (see storage.SharedPush); nil until
	// read from the database.
	pushCovered map[string]bool
	// pushMembers are the joined local members for push rules; nil until computed and after
	// any change to members.
	pushMembers *pushMembers

	// In a cluster (Config.Cluster): held is the room's lock across processes while mu is
	// held, and head the room's newest event NID when this process last let it go. A room
	// whose head has moved when the lock is taken again was written by another process, and
	// is read again from the database.
	held *storage.RoomLock
	head int64

	// waiting counts the inputs waiting for mu (queued messages included), for InputQueue.
	waiting atomic.Int64

	qmu     sync.Mutex // guards queue and leading; never held while waiting for mu
	queue   []*sendJob // messages waiting to be committed
	leading bool       // whether a goroutine is committing the queue
}

type extremity struct {
	nid int64
	id  string
}

// errUnknownRoom is the client-visible error for a room this server does not have.
var errUnknownRoom = spec.NotFound("unknown room")

// lockRoom returns the room with its lock held, loading it from the database if needed.
// The caller must call r.unlock().
func (s *Server) lockRoom(ctx context.Context, roomID string) (*room, error) {
	s.mu.Lock()
	r, ok := s.rooms[roomID]
	if !ok {
		r = &room{id: roomID}
		s.rooms[roomID] = r
	}
	s.mu.Unlock()
	r.waiting.Add(1)
	start := time.Now()
	r.mu.Lock()
	r.waiting.Add(-1)
	if err := s.acquire(ctx, r); err != nil {
		r.mu.Unlock()
		return nil, err
	}
	s.inputWaited(start)
	if r.loaded {
		return r, nil
	}
	if err := s.loadRoom(ctx, r); err != nil {
		r.unlock()
		return nil, err
	}
	return r, nil
}

// acquire takes, in a cluster, the room's lock across processes for the caller, who holds
// r.mu; if another process stored an event in the room since this one last held the lock
// (the room's head moved), the in-memory view is marked for reloading. Outside a cluster it
// does nothing.
//
// Holding the lock for the whole of a room's input (building, authorising, committing), and
// not only around the commit, is what keeps the DAG linear across processes: the next
// process builds on the extremities and state this one committed, never on a stale copy.
func (s *Server) acquire(ctx context.Context, r *room) error {
	if !s.cfg.Cluster {
		return nil
	}
	l, head, err := s.db.LockRoom(ctx, r.id)
	if err != nil {
		return err
	}
	r.held = l
	if head != r.head {
		// Another process stored events in the room: read its head again, and drop the
		// parsed events that its redactions changed (a room this process never held has
		// none of them cached from its input; reads elsewhere may, see the README).
		if r.head > 0 {
			nids, err := s.db.RedactedSince(ctx, r.id, r.head)
			if err != nil {
				_, _ = l.Release(ctx, r.id)
				r.held = nil
				return err
			}
			for _, nid := range nids {
				s.pdus.forget(nid)
			}
		}
		r.loaded = false
		r.head = head
	}
	return nil
}

// unlock lets the room go: its lock across processes (in a cluster), then r.mu.
func (r *room) unlock() {
	if r.held != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		head, err := r.held.Release(ctx, r.id)
		cancel()
		r.held = nil
		if err != nil {
			r.loaded = false // read again next time, whatever happened
		} else {
			r.head = head
		}
	}
	r.mu.Unlock()
}

func (s *Server) loadRoom(ctx context.Context, r *room) error {
	row, err := s.db.Room(ctx, r.id)
	if errors.Is(err, storage.ErrNotFound) {
		return errUnknownRoom
	} else if err != nil {
		return err
	}
	ver, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(row.Version))
	if err != nil {
		return fmt.Errorf("room %s has unsupported version %s", r.id, row.Version)
	}
	state, chainLen, err := s.stateAt(ctx, row.StateSnapshotNID)
	if err != nil {
		return err
	}
	extNIDs, err := s.db.ForwardExtremities(ctx, row.NID)
	if err != nil {
		return err
	}
	exts, err := s.db.EventsByNID(ctx, extNIDs)
	if err != nil {
		return err
	}
	members, err := s.db.RoomMembers(ctx, row.NID, "")
	if err != nil {
		return err
	}
	r.nid, r.version, r.snapshot, r.chainLen, r.maxDepth = row.NID, ver, row.StateSnapshotNID, chainLen, row.MaxDepth
	r.state = copyState(state)
	r.extremities = r.extremities[:0]
	for _, e := range exts {
		r.extremities = append(r.extremities, extremity{nid: e.NID, id: e.EventID})
	}
	r.members = make(map[string]string, len(members))
	for _, m := range members {
		r.members[m.UserID] = m.Membership
	}
	r.partial = nil
	if p, err := s.db.PartialStateRoom(ctx, row.NID); err == nil {
		r.partial = p
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	r.pushCovered, r.pushMembers = nil, nil
	r.loaded = true
	return nil
}

// RoomVersion returns the version of a room this server knows.
func (s *Server) RoomVersion(ctx context.Context, roomID string) (gomatrixserverlib.IRoomVersion, error) {
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer r.unlock()
	return r.version, nil
}

// Membership returns the user's current membership of the room ("" when none).
func (s *Server) Membership(ctx context.Context, roomID, userID string) (string, error) {
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return "", err
	}
	defer r.unlock()
	return r.members[userID], nil
}

// JoinedMembers returns the users currently joined to the room. It reads the database, not
// the room's in-memory head, so that typing notifications and receipts never wait for a room
// whose input is busy fetching events from another server.
func (s *Server) JoinedMembers(ctx context.Context, roomID string) ([]string, error) {
	room, err := s.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errUnknownRoom
	} else if err != nil {
		return nil, err
	}
	ms, err := s.db.RoomMembers(ctx, room.NID, spec.Join)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.UserID)
	}
	return out, nil
}

func copyState(m map[int64]int64) map[int64]int64 {
	out := make(map[int64]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func userIDForSender(_ spec.RoomID, senderID spec.SenderID) (*spec.UserID, error) {
	return spec.NewUserID(string(senderID), true)
}
