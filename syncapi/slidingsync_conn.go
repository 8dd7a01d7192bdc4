package syncapi

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/lattice-chat/lattice/internal/httputil"
)

// Limits on what sliding sync keeps in memory.
const (
	maxSlidingConns      = 10000 // connections over all users (see evictLocked)
	maxConnsPerUser      = 50    // one user's connections over all devices; past it, their least recently used goes
	maxConnsPerDevice    = 20    // a device's connections (conn_id); past it, its least recently used goes
	maxStatesPerConn     = 8     // responses of one connection not yet acknowledged
	maxSlidingBumpsCache = 100000
)

// errUnknownPos tells the client to start the connection again (MSC4186 "Connections").
func errUnknownPos() error {
	return httputil.Errorf(http.StatusBadRequest, "M_UNKNOWN_POS", "unknown or expired pos: start a new connection")
}

// connKey identifies a connection: conn_id is scoped to the user and device.
type connKey struct {
	userID, deviceID, connID string
}

// connState is what the client has after one response of a connection. It is immutable once
// stored (next states are clones).
type connState struct {
	pos      int64                   // the pos of the response that led here (0: a new connection)
	to       Token                   // the stream positions that response was built at
	rooms    map[string]sentRoom     // room ID -> what was sent of it
	lists    map[string]int          // list name -> count sent
	ext      slidingExtensionsConfig // the extension configs, kept when a request leaves one out
	toDevice int64                   // the to-device position delivered up to
}

// sentRoom is what a connection has of one room.
type sentRoom struct {
	upTo          int64  // the room's events are sent up to this stream position
	membership    string // the membership it was sent with
	membershipNID int64
	timelineLimit int    // the largest timeline_limit used since the room was (re)sent whole
	stateSig      string // the required_state config it was sent with
	isDM          bool
	// members are the users whose member event was sent as a lazy member, at or before upTo
	// (copied on write: states share it).
	members map[string]bool
	// How far the extensions delivered the room's receipts, room account data and typing (in
	// their streams): they stop while the room is out of an extension's scope, and the room
	// catches up from there when it comes back.
	receiptsTo, accountDataTo, typingTo int64
	// countsReceipts is the receipts stream position the unread counts the connection has
	// are current at: a read receipt of the user's own after it (another device read the
	// room) sends the counts again.
	countsReceipts int64
}

func (c *connState) clone() *connState {
	out := *c
	out.rooms = make(map[string]sentRoom, len(c.rooms))
	for k, v := range c.rooms {
		out.rooms[k] = v
	}
	out.lists = map[string]int{}
	return &out
}

// slidingConn is one connection: its states by pos. The oldest kept is the one the client
// last acknowledged; newer ones are responses that may or may not have reached the client.
type slidingConn struct {
	states map[int64]*connState
	// acked is the newest pos a request was made with: the client has it, so it is never
	// evicted (a client that cancels its request and asks again sends it again).
	acked int64
	used  int64 // slidingSync.tick when a request last began or ended on it (least recently used goes first)
}

// slidingSync is the sliding sync state of the server: the connections, and caches derived
// from the database. The connections are also written to the database (slidingsync_store.go),
// from where a connection unknown in memory is loaded (after a restart or an eviction).
type slidingSync struct {
	mu      sync.Mutex // guards all the fields
	conns   map[connKey]*slidingConn
	store   *connStore // nil until Start (tests of the sync API alone)
	tick    int64      // counts uses of connections, for slidingConn.used
	limit   int        // the connections kept over all users; 0 is maxSlidingConns (tests lower it)
	lastPos int64
	bumps   map[int64]bumpEntry // room NID -> bump stamp cache (slidingsync_lists.go)
	senders map[int64]string    // membership event NID -> sender
	// roomLookups counts the rooms whose newest event was looked up one by one (tests).
	roomLookups int64
	// receiptRooms counts the rooms whose receipts the receipts extension read (tests).
	receiptRooms int64
	// stateLoads counts the state events required_state and summaries loaded (tests).
	stateLoads int64
}

// begin returns the state a request with pos builds on: empty for a new connection (no pos),
// which replaces any older one with the same key, else the state stored under pos. States
// older than pos are forgotten: the client has seen pos, so it will never send them again.
func (ss *slidingSync) begin(key connKey, pos string) (*connState, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.conns == nil {
		ss.conns = map[connKey]*slidingConn{}
	}
	if pos == "" {
		ss.evictLocked(key)
		ss.tick++
		ss.conns[key] = &slidingConn{states: map[int64]*connState{}, used: ss.tick}
		if ss.store != nil {
			ss.store.started(key)
		}
		return &connState{rooms: map[string]sentRoom{}, lists: map[string]int{}}, nil
	}
	n, err := strconv.ParseInt(pos, 10, 64)
	if err != nil {
		return nil, errUnknownPos()
	}
	conn := ss.conns[key]
	if conn == nil || conn.states[n] == nil {
		return nil, errNotInMemory
	}
	if n > conn.acked {
		conn.acked = n
	}
	ss.tick++
	conn.used = ss.tick
	for p := range conn.states {
		if p < n {
			delete(conn.states, p)
		}
	}
	return conn.states[n], nil
}

// commit stores the state after a response and returns its pos. A connection replaced or
// dropped meanwhile is created again so that the pos works.
func (ss *slidingSync) commit(key connKey, st *connState) string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.conns == nil {
		ss.conns = map[connKey]*slidingConn{}
	}
	if ss.lastPos == 0 {
		// Positions from before a restart are never mistaken for new ones.
		ss.lastPos = time.Now().UnixMilli()
	}
	ss.lastPos++
	st.pos = ss.lastPos
	conn := ss.conns[key]
	if conn == nil {
		ss.evictLocked(key)
		conn = &slidingConn{states: map[int64]*connState{}}
		ss.conns[key] = conn
	}
	ss.tick++
	conn.used = ss.tick
	for len(conn.states) >= maxStatesPerConn {
		oldest := int64(-1)
		for p := range conn.states {
			if p != conn.acked && (oldest < 0 || p < oldest) {
				oldest = p
			}
		}
		if oldest < 0 {
			break
		}
		delete(conn.states, oldest)
	}
	conn.states[st.pos] = st
	if ss.store != nil {
		ss.store.changed(key, st)
	}
	return strconv.FormatInt(st.pos, 10)
}

// errNotInMemory is begin's answer for a pos of a connection it does not hold: the caller
// looks in the database (restore), else answers M_UNKNOWN_POS.
var errNotInMemory = errors.New("sliding sync connection state not in memory")

// restore installs a connection state loaded from the database as the connection's only
// state, acknowledged, and returns it. Positions continue after it.
func (ss *slidingSync) restore(key connKey, st *connState) *connState {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.conns == nil {
		ss.conns = map[connKey]*slidingConn{}
	}
	if conn := ss.conns[key]; conn != nil && conn.states[st.pos] != nil {
		return conn.states[st.pos] // another request restored it meanwhile
	}
	ss.evictLocked(key)
	ss.tick++
	ss.conns[key] = &slidingConn{states: map[int64]*connState{st.pos: st}, acked: st.pos, used: ss.tick}
	ss.lastPos = max(ss.lastPos, st.pos, time.Now().UnixMilli())
	if ss.store != nil {
		ss.store.loaded(key, st)
	}
	return st
}

// evictLocked makes room for a new connection of key. The cost falls on the requesting user
// first: past the device's or the user's cap, their least recently used connection goes; at
// the cap over all users, the user's own least recently used one goes if they have another,
// else the least recently used of all. So one user with many devices cannot push out the
// connections of others beyond what the server-wide cap must shed, and idle ones go first.
func (ss *slidingSync) evictLocked(key connKey) {
	limit := ss.limit
	if limit <= 0 {
		limit = maxSlidingConns
	}
	for {
		var oldestDev, oldestUser, oldestAll *connKey
		device, user, others := 0, 0, 0
		for k, c := range ss.conns {
			if k == key {
				continue // replaced, not added
			}
			others++
			if oldestAll == nil || c.used < ss.conns[*oldestAll].used {
				oldestAll = &k
			}
			if k.userID != key.userID {
				continue
			}
			user++
			if oldestUser == nil || c.used < ss.conns[*oldestUser].used {
				oldestUser = &k
			}
			if k.deviceID == key.deviceID {
				device++
				if oldestDev == nil || c.used < ss.conns[*oldestDev].used {
					oldestDev = &k
				}
			}
		}
		var victim *connKey
		switch {
		case device >= maxConnsPerDevice:
			victim = oldestDev
		case user >= maxConnsPerUser:
			victim = oldestUser
		case others >= limit && oldestUser != nil:
			victim = oldestUser
		case others >= limit && oldestAll != nil:
			victim = oldestAll
		default:
			return
		}
		delete(ss.conns, *victim)
		if ss.store != nil {
			ss.store.forget(*victim)
		}
	}
}
