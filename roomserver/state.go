package roomserver

import (
	"container/list"
	"context"
	"fmt"
	"sync"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/lattice-chat/lattice/storage"
)

// maxChainLen bounds the delta chain of a state snapshot; a snapshot at this length is written
// whole instead, so loading state never walks more than maxChainLen rows.
const maxChainLen = 32

// stateKeys caches the numeric IDs of (type, state key) pairs in both directions.
type stateKeys struct {
	mu    sync.RWMutex // guards byKey and byNID
	byKey map[storage.StateKey]int64
	byNID map[int64]storage.StateKey
}

func newStateKeys() *stateKeys {
	return &stateKeys{byKey: make(map[storage.StateKey]int64), byNID: make(map[int64]storage.StateKey)}
}

func (k *stateKeys) remember(key storage.StateKey, nid int64) {
	k.mu.Lock()
	k.byKey[key] = nid
	k.byNID[nid] = key
	k.mu.Unlock()
}

// nid returns the NID of key, creating it inside tx.
func (s *Server) stateKeyNID(ctx context.Context, tx *storage.Tx, key storage.StateKey) (int64, error) {
	s.keys.mu.RLock()
	nid, ok := s.keys.byKey[key]
	s.keys.mu.RUnlock()
	if ok {
		return nid, nil
	}
	nid, err := tx.StateKeyNID(ctx, key)
	if err != nil {
		return 0, err
	}
	// Not remembered until commit: a rolled-back NID must not be cached. The unique row makes
	// the NID stable once committed, and remembering it early would only matter on rollback.
	return nid, nil
}

// lookupStateKeyNID returns the NID of key, or 0 when no event ever had it.
func (s *Server) lookupStateKeyNID(ctx context.Context, key storage.StateKey) (int64, error) {
	s.keys.mu.RLock()
	nid, ok := s.keys.byKey[key]
	s.keys.mu.RUnlock()
	if ok {
		return nid, nil
	}
	nid, err := s.db.LookupStateKeyNID(ctx, key)
	if err == storage.ErrNotFound {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	s.keys.remember(key, nid)
	return nid, nil
}

// StateKey returns the (type, state key) pair of a NID.
func (s *Server) StateKey(ctx context.Context, nid int64) (storage.StateKey, error) {
	s.keys.mu.RLock()
	key, ok := s.keys.byNID[nid]
	s.keys.mu.RUnlock()
	if ok {
		return key, nil
	}
	key, err := s.db.StateKeyByNID(ctx, nid)
	if err != nil {
		return key, fmt.Errorf("state key %d: %w", nid, err)
	}
	s.keys.remember(key, nid)
	return key, nil
}

// snapshotCache is an LRU of fully expanded state snapshots. Cached maps are shared and must
// never be modified.
type snapshotCache struct {
	mu    sync.Mutex // guards lru and items
	max   int
	lru   *list.List
	items map[int64]*list.Element
}

type snapshotEntry struct {
	nid      int64
	state    map[int64]int64
	chainLen int
}

func newSnapshotCache(max int) *snapshotCache {
	return &snapshotCache{max: max, lru: list.New(), items: make(map[int64]*list.Element)}
}

func (c *snapshotCache) get(nid int64) (*snapshotEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[nid]; ok {
		c.lru.MoveToFront(el)
		return el.Value.(*snapshotEntry), true
	}
	return nil, false
}

func (c *snapshotCache) put(e *snapshotEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[e.nid]; ok {
		return
	}
	c.items[e.nid] = c.lru.PushFront(e)
	for c.lru.Len() > c.max {
		old := c.lru.Remove(c.lru.Back()).(*snapshotEntry)
		delete(c.items, old.nid)
	}
}

// stateAt returns the full state of a snapshot (shared: do not modify) and its chain length.
// Snapshot 0 is the empty state.
func (s *Server) stateAt(ctx context.Context, snapshotNID int64) (map[int64]int64, int, error) {
	if snapshotNID == 0 {
		return map[int64]int64{}, 0, nil
	}
	if e, ok := s.snapshots.get(snapshotNID); ok {
		return e.state, e.chainLen, nil
	}
	// Walk up to the nearest cached or whole snapshot, then apply the deltas downwards.
	var chain []*storage.Snapshot
	var base map[int64]int64
	for nid := snapshotNID; nid != 0; {
		if e, ok := s.snapshots.get(nid); ok {
			base = e.state
			break
		}
		snap, err := s.db.Snapshot(ctx, nid)
		if err != nil {
			return nil, 0, err
		}
		chain = append(chain, snap)
		nid = snap.Parent
	}
	state := make(map[int64]int64, len(base)+8)
	for k, v := range base {
		state[k] = v
	}
	for i := len(chain) - 1; i >= 0; i-- {
		for k, v := range chain[i].Entries {
			if v == 0 {
				delete(state, k)
			} else {
				state[k] = v
			}
		}
	}
	chainLen := chain[0].ChainLen
	s.snapshots.put(&snapshotEntry{nid: snapshotNID, state: state, chainLen: chainLen})
	return state, chainLen, nil
}

// StateAt returns the state (state key NID -> event NID) of a snapshot. Do not modify it.
func (s *Server) StateAt(ctx context.Context, snapshotNID int64) (map[int64]int64, error) {
	st, _, err := s.stateAt(ctx, snapshotNID)
	return st, err
}

// pduCache is an LRU of parsed events by NID, so that auth events are not parsed again for
// every new event.
type pduCache struct {
	mu    sync.Mutex // guards lru and items
	max   int
	lru   *list.List
	items map[int64]*list.Element
}

type pduEntry struct {
	nid int64
	pdu gomatrixserverlib.PDU
}

func newPDUCache(max int) *pduCache {
	return &pduCache{max: max, lru: list.New(), items: make(map[int64]*list.Element)}
}

func (c *pduCache) get(nid int64) (gomatrixserverlib.PDU, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[nid]; ok {
		c.lru.MoveToFront(el)
		return el.Value.(*pduEntry).pdu, true
	}
	return nil, false
}

func (c *pduCache) put(nid int64, pdu gomatrixserverlib.PDU) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[nid]; ok {
		return
	}
	c.items[nid] = c.lru.PushFront(&pduEntry{nid: nid, pdu: pdu})
	for c.lru.Len() > c.max {
		old := c.lru.Remove(c.lru.Back()).(*pduEntry)
		delete(c.items, old.nid)
	}
}

func (c *pduCache) forget(nid int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[nid]; ok {
		c.lru.Remove(el)
		delete(c.items, nid)
	}
}

// pdusByNID returns parsed events for nids, from the cache where possible.
func (s *Server) pdusByNID(ctx context.Context, ver gomatrixserverlib.IRoomVersion, nids []int64) (map[int64]gomatrixserverlib.PDU, error) {
	out := make(map[int64]gomatrixserverlib.PDU, len(nids))
	var missing []int64
	for _, nid := range nids {
		if p, ok := s.pdus.get(nid); ok {
			out[nid] = p
		} else {
			missing = append(missing, nid)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	evs, err := s.db.EventsByNID(ctx, missing)
	if err != nil {
		return nil, err
	}
	for _, ev := range evs {
		p, err := ver.NewEventFromTrustedJSONWithEventID(ev.EventID, ev.JSON, ev.RedactedBy != "")
		if err != nil {
			return nil, fmt.Errorf("parse event %s: %w", ev.EventID, err)
		}
		s.pdus.put(ev.NID, p)
		out[ev.NID] = p
	}
	return out, nil
}

// StateEvents returns the events of a state map for the given keys (all keys when nil).
func (s *Server) stateEvents(ctx context.Context, ver gomatrixserverlib.IRoomVersion, state map[int64]int64, keys []storage.StateKey) ([]gomatrixserverlib.PDU, error) {
	var nids []int64
	if keys == nil {
		for _, ev := range state {
			nids = append(nids, ev)
		}
	} else {
		for _, k := range keys {
			knid, err := s.lookupStateKeyNID(ctx, k)
			if err != nil {
				return nil, err
			}
			if ev, ok := state[knid]; ok && knid != 0 {
				nids = append(nids, ev)
			}
		}
	}
	m, err := s.pdusByNID(ctx, ver, nids)
	if err != nil {
		return nil, err
	}
	out := make([]gomatrixserverlib.PDU, 0, len(m))
	for _, nid := range nids {
		if p, ok := m[nid]; ok {
			out = append(out, p)
		}
	}
	return out, nil
}
