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
	mu    sync.RWMutex // guards byKey, byNID and absent
	byKey map[storage.StateKey]int64
	byNID map[int64]storage.StateKey
	// absent holds keys the database did not have when asked; remember drops a key from it
	// when the key is created (every key is created by this process, see ARCHITECTURE.md).
	// gen counts remembers, so that an answer read before a creation is not cached after it.
	absent map[storage.StateKey]bool
	gen    uint64
}

// maxAbsentKeys bounds the negative cache (keys looked up but never created).
const maxAbsentKeys = 10000

func newStateKeys() *stateKeys {
	return &stateKeys{byKey: make(map[storage.StateKey]int64), byNID: make(map[int64]storage.StateKey), absent: make(map[storage.StateKey]bool)}
}

func (k *stateKeys) remember(key storage.StateKey, nid int64) {
	k.mu.Lock()
	k.byKey[key] = nid
	k.byNID[nid] = key
	delete(k.absent, key)
	k.gen++
	k.mu.Unlock()
}

// rememberAbsent records that key did not exist when the database was asked, at generation
// gen; a key remembered since then is not recorded.
func (k *stateKeys) rememberAbsent(key storage.StateKey, gen uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gen != gen {
		return
	}
	if len(k.absent) >= maxAbsentKeys {
		k.absent = make(map[storage.StateKey]bool)
	}
	k.absent[key] = true
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

// StateKeyNID returns the NID of a (type, state key) pair, 0 when no event ever used it.
func (s *Server) StateKeyNID(ctx context.Context, key storage.StateKey) (int64, error) {
	return s.lookupStateKeyNID(ctx, key)
}

// lookupStateKeyNID returns the NID of key, or 0 when no event ever had it.
func (s *Server) lookupStateKeyNID(ctx context.Context, key storage.StateKey) (int64, error) {
	s.keys.mu.RLock()
	nid, ok := s.keys.byKey[key]
	absent, gen := s.keys.absent[key], s.keys.gen
	s.keys.mu.RUnlock()
	if ok {
		return nid, nil
	}
	if absent {
		return 0, nil
	}
	nid, err := s.db.LookupStateKeyNID(ctx, key)
	if err == storage.ErrNotFound {
		s.keys.rememberAbsent(key, gen)
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

// lru is a least-recently-used cache. Values are shared and must not be modified. It holds
// at most max entries and, when weigh is set, at most maxWeight in the sum of its values'
// weights, so that a cache of values whose size varies (the expanded state of a room of
// 50,000 members beside those of direct chats) is bounded in memory and not only in count.
// The newest entry stays even when it alone weighs more.
type lru[K comparable, V any] struct {
	mu        sync.Mutex // guards order, items and weight
	max       int
	maxWeight int
	weigh     func(V) int
	weight    int
	order     *list.List // of *lruEntry[K, V], most recent first
	items     map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	key    K
	val    V
	weight int
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	return &lru[K, V]{max: max, order: list.New(), items: make(map[K]*list.Element)}
}

// newWeightedLRU is newLRU bounded also by maxWeight, the sum of weigh over the values.
func newWeightedLRU[K comparable, V any](max, maxWeight int, weigh func(V) int) *lru[K, V] {
	c := newLRU[K, V](max)
	c.maxWeight, c.weigh = maxWeight, weigh
	return c
}

func (c *lru[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		c.order.MoveToFront(el)
		return el.Value.(*lruEntry[K, V]).val, true
	}
	var zero V
	return zero, false
}

func (c *lru[K, V]) put(k K, v V) {
	w := 0
	if c.weigh != nil {
		w = c.weigh(v)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		e := el.Value.(*lruEntry[K, V])
		c.weight += w - e.weight
		e.val, e.weight = v, w
		c.order.MoveToFront(el)
	} else {
		c.items[k] = c.order.PushFront(&lruEntry[K, V]{key: k, val: v, weight: w})
		c.weight += w
	}
	for c.order.Len() > 1 && (c.order.Len() > c.max || (c.weigh != nil && c.weight > c.maxWeight)) {
		c.remove(c.order.Back())
	}
}

// remove drops el; c.mu is held.
func (c *lru[K, V]) remove(el *list.Element) {
	old := c.order.Remove(el).(*lruEntry[K, V])
	delete(c.items, old.key)
	c.weight -= old.weight
}

func (c *lru[K, V]) forget(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		c.remove(el)
	}
}

// snapshotEntry is a fully expanded state snapshot.
type snapshotEntry struct {
	state    map[int64]int64
	chainLen int
}

// stateAt returns the full state of a snapshot (shared: do not modify) and its chain length.
// Snapshot 0 is the empty state.
func (s *Server) stateAt(ctx context.Context, snapshotNID int64) (map[int64]int64, int, error) {
	return s.stateAtFrom(ctx, snapshotNID, func(nid int64) (*storage.Snapshot, error) { return s.db.Snapshot(ctx, nid) })
}

// PreloadStates brings the snapshots nids into the cache, reading the missing ones and their
// ancestors with one statement per level of their chains rather than two per snapshot: for
// the rooms of an initial sync after a start.
func (s *Server) PreloadStates(ctx context.Context, nids []int64) error {
	read := map[int64]*storage.Snapshot{}
	var frontier []int64
	seen := map[int64]bool{}
	for _, nid := range nids {
		if _, ok := s.snapshots.get(nid); !ok && nid != 0 && !seen[nid] {
			seen[nid] = true
			frontier = append(frontier, nid)
		}
	}
	for len(frontier) > 0 {
		snaps, err := s.db.Snapshots(ctx, frontier)
		if err != nil {
			return err
		}
		var next []int64
		for _, nid := range frontier {
			snap, ok := snaps[nid]
			if !ok {
				continue // stateAt reports it
			}
			read[nid] = snap
			if p := snap.Parent; p != 0 && !seen[p] {
				if _, cached := s.snapshots.get(p); !cached {
					seen[p] = true
					next = append(next, p)
				}
			}
		}
		frontier = next
	}
	for _, nid := range nids {
		_, _, err := s.stateAtFrom(ctx, nid, func(nid int64) (*storage.Snapshot, error) {
			if snap, ok := read[nid]; ok {
				return snap, nil
			}
			return s.db.Snapshot(ctx, nid)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// stateAtFrom is stateAt reading the snapshots it lacks with snapshot.
func (s *Server) stateAtFrom(ctx context.Context, snapshotNID int64, snapshot func(nid int64) (*storage.Snapshot, error)) (map[int64]int64, int, error) {
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
		snap, err := snapshot(nid)
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
	s.snapshots.put(snapshotNID, &snapshotEntry{state: state, chainLen: chainLen})
	return state, chainLen, nil
}

// StateAt returns the state (state key NID -> event NID) of a snapshot. Do not modify it.
func (s *Server) StateAt(ctx context.Context, snapshotNID int64) (map[int64]int64, error) {
	st, _, err := s.stateAt(ctx, snapshotNID)
	return st, err
}

// pdusByNID returns parsed events for nids, from the cache where possible.
func (s *Server) pdusByNID(ctx context.Context, ver gomatrixserverlib.IRoomVersion, nids []int64) (map[int64]gomatrixserverlib.PDU, error) {
	return s.pdusFrom(ctx, s.db, ver, nids)
}

// eventReader reads events: the database, or a transaction (for events it wrote itself).
type eventReader interface {
	EventsByNID(ctx context.Context, nids []int64) ([]*storage.Event, error)
}

// pdusFrom is pdusByNID reading from db.
func (s *Server) pdusFrom(ctx context.Context, db eventReader, ver gomatrixserverlib.IRoomVersion, nids []int64) (map[int64]gomatrixserverlib.PDU, error) {
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
	evs, err := db.EventsByNID(ctx, missing)
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

// clear forgets every entry.
func (c *lru[K, V]) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.order.Init()
	c.items = make(map[K]*list.Element)
}
