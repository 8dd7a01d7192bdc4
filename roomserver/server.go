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
// The caller must call r.mu.Unlock().
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
	s.inputWaited(start)
	if r.loaded {
		return r, nil
	}
	if err := s.loadRoom(ctx, r); err != nil {
		r.mu.Unlock()
		return nil, err
	}
	return r, nil
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
	defer r.mu.Unlock()
	return r.version, nil
}

// Membership returns the user's current membership of the room ("" when none).
func (s *Server) Membership(ctx context.Context, roomID, userID string) (string, error) {
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return "", err
	}
	defer r.mu.Unlock()
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
