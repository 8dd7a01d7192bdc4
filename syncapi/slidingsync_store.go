package syncapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/lattice-chat/lattice/storage"
)

// Sliding sync connections are kept in memory and written to the database behind the
// responses, so that a client reconnecting with its pos after a restart (or after its
// connection was evicted from memory) carries on incrementally. The writes are cheap:
//   - coalesced: a connection answered many times between two flushes is written once, with
//     its newest state;
//   - batched: one transaction per flush for all the connections that changed;
//   - incremental: a write holds the connection's header (pos, stream positions, list
//     counts, extension configs) and only the rooms whose entry changed since the last write.
//
// A state is flushed within connFlushInterval, and at shutdown. A crash can lose the newest
// states: a client holding one of them gets M_UNKNOWN_POS, never a wrong incremental answer,
// because a stored state is found only under its own exact pos.
const (
	connFlushInterval = time.Second
	// connRetention is how long a connection nobody uses is kept in the database.
	connRetention = 30 * 24 * time.Hour
)

// connStore writes connection states to the database. Lock order: slidingSync.mu, then mu.
type connStore struct {
	db  *storage.DB
	log *slog.Logger

	mu sync.Mutex // guards dirty, written, restart and gen
	// dirty holds the newest state of each connection not written yet.
	dirty map[connKey]*connState
	// written is the state last written of each connection, for the room diffs (states are
	// immutable, so it is shared, not copied); absent after the connection started again.
	written map[connKey]*connState
	// restart marks the connections that started again since their last write: their stored
	// rooms go.
	restart map[connKey]bool
	// gen counts the restarts of each connection, so that a flush that overlapped one does
	// not take its write for the new connection's.
	gen map[connKey]int

	stop chan struct{}
	done chan struct{}
}

// Start begins writing sliding sync connections to the database, and purges the ones left
// unused for connRetention. Close writes what is pending and stops.
func (s *Server) Start(ctx context.Context) error {
	st := &connStore{db: s.db, log: s.log, dirty: map[connKey]*connState{}, written: map[connKey]*connState{},
		restart: map[connKey]bool{}, gen: map[connKey]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		_, err := tx.PurgeSlidingConnections(ctx, time.Now().Add(-connRetention).UnixMilli())
		return err
	})
	if err != nil {
		return err
	}
	s.sliding.mu.Lock()
	s.sliding.store = st
	s.sliding.mu.Unlock()
	go st.run()
	return nil
}

// Close stops the builders of /sync answers, writes the pending sliding sync connection
// states and stops their writer.
func (s *Server) Close() error {
	s.build.close()
	s.sliding.mu.Lock()
	st := s.sliding.store
	s.sliding.mu.Unlock()
	if st == nil {
		return nil
	}
	close(st.stop)
	<-st.done
	return nil
}

func (st *connStore) run() {
	defer close(st.done)
	t := time.NewTicker(connFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			st.flush()
		case <-st.stop:
			st.flush()
			return
		}
	}
}

// changed records the newest state of a connection (called under slidingSync.mu).
func (st *connStore) changed(key connKey, state *connState) {
	st.mu.Lock()
	st.dirty[key] = state
	st.mu.Unlock()
}

// started records that a connection started again: its next write replaces the stored one.
func (st *connStore) started(key connKey) {
	st.mu.Lock()
	st.restart[key] = true
	st.gen[key]++
	delete(st.written, key)
	delete(st.dirty, key)
	st.mu.Unlock()
}

// loaded records a connection state read from the database as the one written.
func (st *connStore) loaded(key connKey, state *connState) {
	st.mu.Lock()
	st.written[key] = state
	st.mu.Unlock()
}

// forget drops what the store holds of a connection evicted from memory (its stored rows
// stay, to be loaded when the client comes back; the next write replaces them whole).
func (st *connStore) forget(key connKey) {
	st.mu.Lock()
	delete(st.written, key)
	st.mu.Unlock()
}

// flush writes the dirty connections in one transaction. On failure they stay dirty and the
// next flush tries again.
func (st *connStore) flush() {
	st.mu.Lock()
	if len(st.dirty) == 0 {
		st.mu.Unlock()
		return
	}
	var writes []storage.SlidingConnWrite
	var keys []connKey
	var states []*connState
	var gens []int
	for key, state := range st.dirty {
		writes = append(writes, diffConn(key, st.written[key], state, st.restart[key]))
		keys = append(keys, key)
		states = append(states, state)
		gens = append(gens, st.gen[key])
	}
	st.mu.Unlock()

	now := time.Now().UnixMilli()
	err := st.db.WithTx(context.Background(), func(tx *storage.Tx) error {
		for _, w := range writes {
			if err := tx.WriteSlidingConnection(context.Background(), w, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		st.log.Error("writing sliding sync connections failed", "err", err)
		return
	}
	st.mu.Lock()
	for i, key := range keys {
		if st.gen[key] != gens[i] {
			continue // the connection started again meanwhile: its next write replaces this one
		}
		if st.dirty[key] == states[i] {
			delete(st.dirty, key)
		}
		st.written[key] = states[i] // the base of the next diff, changed again meanwhile or not
		delete(st.restart, key)
	}
	st.mu.Unlock()
}

// writeThrough writes a connection's new state whole before its response goes out: in a
// cluster the client's next request may reach another process, which finds the state only
// in the database (beginSliding). The whole state is written, not a diff against what this
// process last wrote, since another process may have written the connection since.
func (st *connStore) writeThrough(ctx context.Context, key connKey, state *connState) error {
	w := diffConn(key, nil, state, true)
	err := st.db.WithTx(ctx, func(tx *storage.Tx) error {
		return tx.WriteSlidingConnection(ctx, w, time.Now().UnixMilli())
	})
	if err != nil {
		return err
	}
	st.mu.Lock()
	if st.dirty[key] == state {
		delete(st.dirty, key)
	}
	st.written[key] = state
	delete(st.restart, key)
	st.mu.Unlock()
	return nil
}

// diffConn is the write that takes the stored connection from prev (nil: nothing usable
// stored) to next.
func diffConn(key connKey, prev, next *connState, restart bool) storage.SlidingConnWrite {
	w := storage.SlidingConnWrite{
		Key:     storage.SlidingConnKey{UserID: key.userID, DeviceID: key.deviceID, ConnID: key.connID},
		Pos:     next.pos,
		Header:  encodeConnHeader(next),
		Replace: restart || prev == nil,
		Rooms:   map[string]string{},
	}
	for roomID, r := range next.rooms {
		if !w.Replace {
			if old, ok := prev.rooms[roomID]; ok && sameSentRoom(old, r) {
				continue
			}
		}
		w.Rooms[roomID] = encodeSentRoom(r)
	}
	if !w.Replace {
		for roomID := range prev.rooms {
			if _, ok := next.rooms[roomID]; !ok {
				w.Dropped = append(w.Dropped, roomID)
			}
		}
	}
	return w
}

// connHeader is the stored form of a connection state without its rooms.
type connHeader struct {
	To       string                  `json:"to"`
	Lists    map[string]int          `json:"lists,omitempty"`
	Ext      slidingExtensionsConfig `json:"ext"`
	ToDevice int64                   `json:"to_device,omitempty"`
}

// sentRoomJSON is the stored form of a sentRoom.
type sentRoomJSON struct {
	UpTo           int64    `json:"up_to"`
	Membership     string   `json:"membership"`
	MembershipNID  int64    `json:"membership_nid"`
	TimelineLimit  int      `json:"timeline_limit"`
	StateSig       string   `json:"state_sig"`
	IsDM           bool     `json:"is_dm,omitempty"`
	Members        []string `json:"members,omitempty"`
	ReceiptsTo     int64    `json:"receipts_to,omitempty"`
	AccountDataTo  int64    `json:"account_data_to,omitempty"`
	TypingTo       int64    `json:"typing_to,omitempty"`
	CountsReceipts int64    `json:"counts_receipts,omitempty"`
}

func encodeConnHeader(c *connState) string {
	b, _ := json.Marshal(connHeader{To: c.to.String(), Lists: c.lists, Ext: c.ext, ToDevice: c.toDevice})
	return string(b)
}

func encodeSentRoom(r sentRoom) string {
	members := slices.Sorted(maps.Keys(r.members))
	b, _ := json.Marshal(sentRoomJSON{UpTo: r.upTo, Membership: r.membership, MembershipNID: r.membershipNID,
		TimelineLimit: r.timelineLimit, StateSig: r.stateSig, IsDM: r.isDM, Members: members,
		ReceiptsTo: r.receiptsTo, AccountDataTo: r.accountDataTo, TypingTo: r.typingTo, CountsReceipts: r.countsReceipts})
	return string(b)
}

// sameSentRoom compares two entries; the members maps are copied on write, so the same map
// is the common case.
func sameSentRoom(a, b sentRoom) bool {
	return a.upTo == b.upTo && a.membership == b.membership && a.membershipNID == b.membershipNID &&
		a.timelineLimit == b.timelineLimit && a.stateSig == b.stateSig && a.isDM == b.isDM &&
		a.receiptsTo == b.receiptsTo && a.accountDataTo == b.accountDataTo && a.typingTo == b.typingTo &&
		a.countsReceipts == b.countsReceipts && maps.Equal(a.members, b.members)
}

// loadConn reads a connection's stored state and returns it if it is the state of pos.
func (s *Server) loadConn(ctx context.Context, key connKey, pos int64) (*connState, error) {
	c, err := s.db.SlidingConnection(ctx, storage.SlidingConnKey{UserID: key.userID, DeviceID: key.deviceID, ConnID: key.connID})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	if c.Pos != pos {
		return nil, nil
	}
	var h connHeader
	if err := json.Unmarshal([]byte(c.Header), &h); err != nil {
		return nil, nil // written by another version: start again
	}
	to, err := ParseToken(h.To)
	if err != nil {
		return nil, nil
	}
	st := &connState{pos: pos, to: to, rooms: make(map[string]sentRoom, len(c.Rooms)), lists: h.Lists, ext: h.Ext, toDevice: h.ToDevice}
	if st.lists == nil {
		st.lists = map[string]int{}
	}
	for roomID, raw := range c.Rooms {
		var r sentRoomJSON
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			return nil, nil
		}
		var members map[string]bool
		if len(r.Members) > 0 {
			members = make(map[string]bool, len(r.Members))
			for _, u := range r.Members {
				members[u] = true
			}
		}
		st.rooms[roomID] = sentRoom{upTo: r.UpTo, membership: r.Membership, membershipNID: r.MembershipNID,
			timelineLimit: r.TimelineLimit, stateSig: r.StateSig, isDM: r.IsDM, members: members,
			receiptsTo: r.ReceiptsTo, accountDataTo: r.AccountDataTo, typingTo: r.TypingTo, countsReceipts: r.CountsReceipts}
	}
	return st, nil
}

// beginSliding returns the state a request with pos builds on (slidingSync.begin), loading
// the connection from the database when memory does not have it.
func (s *Server) beginSliding(ctx context.Context, key connKey, pos string) (*connState, error) {
	base, err := s.sliding.begin(key, pos)
	if !errors.Is(err, errNotInMemory) {
		return base, err
	}
	n, _ := strconv.ParseInt(pos, 10, 64) // begin parsed it
	st, err := s.loadConn(ctx, key, n)
	if err != nil {
		return nil, err
	} else if st == nil {
		return nil, errUnknownPos()
	}
	return s.sliding.restore(key, st), nil
}
