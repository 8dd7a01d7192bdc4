package roomserver

import (
	"container/heap"
	"fmt"
	"math"
	"sort"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/roomserver/ownedstate"
)

// resolveState resolves the states stateSets (each the full state after one prev_event) of a
// room of version ver into one state, following the room version's state resolution algorithm.
// authEvents must hold the auth chains of every event of the state sets; events missing from
// them are treated as absent. isRejected reports events rejected by the auth rules (nil: none);
// rejected auth events are never used to fill in missing state in the iterative auth checks.
//
// State resolution v1 (room versions 1) is gomatrixserverlib's ResolveConflictsNew. Versions 2
// (rooms 2-11) and 2.1 (rooms 12+) are implemented here, in resolveV2, because the pinned
// gomatrixserverlib gets them wrong (stateres_test.go has a failing case for each):
//   - ResolveStateConflictsV2New (v2 and v2.1) builds the reverse topological power ordering
//     with Kahn's algorithm run backwards from the newest events, taking the greatest event at
//     each step. That is a topological ordering, but not the lexicographically smallest one
//     the spec asks for, so concurrent power level changes can resolve to the wrong event.
//   - Its mainline ordering breaks ties on the number of non-mainline power level events
//     walked before reaching the mainline, before origin_server_ts; the spec has no such rule.
//   - For v2.1 it panics: the conflicted state subgraph inserts state events looked up in the
//     auth event map (nil when they are not also auth events); the power ordering needs the
//     create event from the partial state, which v2.1 leaves empty; its iterative auth checks
//     add the event being checked instead of the auth event it found; and room version 12
//     events do not list the create event in auth_events at all.
//
// resolveV2 still uses gomatrixserverlib for the authorisation rules themselves (Allowed),
// through ownedstate.Allowed, which adds MSC3757's rule 8 in the rooms of its versions.
func resolveState(ver gomatrixserverlib.IRoomVersion, stateSets [][]gomatrixserverlib.PDU, authEvents []gomatrixserverlib.PDU, isRejected func(eventID string) bool) ([]gomatrixserverlib.PDU, error) {
	if isRejected == nil {
		isRejected = func(string) bool { return false }
	}
	switch len(stateSets) {
	case 0:
		return nil, nil
	case 1:
		return stateSets[0], nil
	}
	switch algo := ver.StateResAlgorithm(); algo {
	case gomatrixserverlib.StateResV1:
		return gomatrixserverlib.ResolveConflictsNew(ver.Version(), stateSets, authEvents, userIDForSender, isRejected)
	case gomatrixserverlib.StateResV2, gomatrixserverlib.StateResV2_1:
		return resolveV2(algo == gomatrixserverlib.StateResV2_1, stateSets, authEvents, isRejected)
	default:
		return nil, fmt.Errorf("room version %s: unsupported state resolution algorithm %v", ver.Version(), algo)
	}
}

// stateMap is a room state keyed by (type, state_key).
type stateMap map[gomatrixserverlib.StateKeyTuple]gomatrixserverlib.PDU

func keyOf(p gomatrixserverlib.PDU) gomatrixserverlib.StateKeyTuple {
	return gomatrixserverlib.StateKeyTuple{EventType: p.Type(), StateKey: *p.StateKey()}
}

// resolver holds what one resolution needs: every known event by ID, and the room's create event.
type resolver struct {
	v21      bool // state resolution v2.1 (room version 12)
	events   map[string]gomatrixserverlib.PDU
	create   gomatrixserverlib.PDU
	rejected func(string) bool
	chains   map[string]map[string]bool // memoised auth chains, without the event itself
}

// resolveV2 is the spec's "Algorithm" for state resolution v2, and v2.1 when v21 is set.
func resolveV2(v21 bool, stateSets [][]gomatrixserverlib.PDU, authEvents []gomatrixserverlib.PDU, isRejected func(string) bool) ([]gomatrixserverlib.PDU, error) {
	r := &resolver{v21: v21, events: map[string]gomatrixserverlib.PDU{}, rejected: isRejected, chains: map[string]map[string]bool{}}
	for _, p := range authEvents {
		r.events[p.EventID()] = p
	}
	for _, set := range stateSets {
		for _, p := range set {
			r.events[p.EventID()] = p
		}
	}
	for _, p := range r.events {
		if p.Type() == spec.MRoomCreate && p.StateKeyEquals("") {
			r.create = p
		}
	}
	if r.create == nil {
		return nil, fmt.Errorf("state resolution: no m.room.create event among the state and auth events")
	}
	unconflicted, conflicted := splitStates(stateSets)
	full := r.fullConflictedSet(stateSets, conflicted)

	// 1. The power events of the full conflicted set and their auth chains within it, sorted by
	//    the reverse topological power ordering.
	x := map[string]bool{}
	for id := range full {
		if isPowerEvent(r.events[id]) {
			x[id] = true
			for a := range r.authChain(id) {
				if full[a] {
					x[a] = true
				}
			}
		}
	}
	// 2. Iterative auth checks from the unconflicted state map (v2) or an empty one (v2.1).
	partial := stateMap{}
	if !v21 {
		for k, p := range unconflicted {
			partial[k] = p
		}
	}
	r.iterativeAuthChecks(partial, r.powerOrdering(x))
	// 3. The remaining events by mainline ordering based on the partial state's power levels,
	// 4. applied to the partial state by the iterative auth checks.
	var rest []gomatrixserverlib.PDU
	for id := range full {
		if !x[id] {
			rest = append(rest, r.events[id])
		}
	}
	r.iterativeAuthChecks(partial, r.mainlineOrdering(partial[gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomPowerLevels}], rest))
	// 5. The unconflicted state map wins over the result.
	for k, p := range unconflicted {
		partial[k] = p
	}
	out := make([]gomatrixserverlib.PDU, 0, len(partial))
	for _, p := range partial {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].EventID() < out[j].EventID() })
	return out, nil
}

// splitStates divides the states into the unconflicted state map (a key with the same event in
// every state) and the conflicted state set (every other event), per the spec's definitions.
func splitStates(stateSets [][]gomatrixserverlib.PDU) (stateMap, map[string]bool) {
	count := map[gomatrixserverlib.StateKeyTuple]map[string]int{}
	byID := map[string]gomatrixserverlib.PDU{}
	for _, set := range stateSets {
		for _, p := range set {
			if p.StateKey() == nil {
				continue
			}
			k := keyOf(p)
			if count[k] == nil {
				count[k] = map[string]int{}
			}
			count[k][p.EventID()]++
			byID[p.EventID()] = p
		}
	}
	unconflicted, conflicted := stateMap{}, map[string]bool{}
	for k, ids := range count {
		for id, n := range ids {
			if len(ids) == 1 && n == len(stateSets) {
				unconflicted[k] = byID[id]
			} else {
				conflicted[id] = true
			}
		}
	}
	return unconflicted, conflicted
}

// authChain returns the IDs of the auth chain of an event (not including it), as far as the
// known events go.
func (r *resolver) authChain(id string) map[string]bool {
	if c, ok := r.chains[id]; ok {
		return c
	}
	c := map[string]bool{}
	r.chains[id] = c // auth_events cannot form a cycle in a valid DAG; this also stops one
	if p, ok := r.events[id]; ok {
		for _, a := range p.AuthEventIDs() {
			if _, known := r.events[a]; !known {
				continue
			}
			c[a] = true
			for b := range r.authChain(a) {
				c[b] = true
			}
		}
	}
	return c
}

// fullConflictedSet returns the conflicted state set, the auth difference, and for v2.1 the
// conflicted state subgraph.
//
// The full auth chain of a state is taken to include the state's own events (as Synapse does).
// The spec's wording leaves them out, but the difference only ever concerns unconflicted events,
// which are in every state, and leaving them in the difference would only re-check them.
func (r *resolver) fullConflictedSet(stateSets [][]gomatrixserverlib.PDU, conflicted map[string]bool) map[string]bool {
	full := map[string]bool{}
	for id := range conflicted {
		full[id] = true
	}
	// Auth difference: the union of the full auth chains minus their intersection.
	inChains := map[string]int{}
	for _, set := range stateSets {
		chain := map[string]bool{}
		for _, p := range set {
			chain[p.EventID()] = true
			for a := range r.authChain(p.EventID()) {
				chain[a] = true
			}
		}
		for id := range chain {
			inChains[id]++
		}
	}
	for id, n := range inChains {
		if n < len(stateSets) {
			full[id] = true
		}
	}
	if r.v21 {
		for id := range r.conflictedSubgraph(conflicted) {
			full[id] = true
		}
	}
	return full
}

// conflictedSubgraph returns the events on auth_events paths between two events of the
// conflicted state set (v2.1 "conflicted state subgraph"): those in the auth chain of a
// conflicted event whose own auth chain, or themselves, include a conflicted event. Conflicted
// events that start such a path are in the conflicted state set already.
func (r *resolver) conflictedSubgraph(conflicted map[string]bool) map[string]bool {
	below := map[string]bool{}
	for id := range conflicted {
		for a := range r.authChain(id) {
			below[a] = true
		}
	}
	out := map[string]bool{}
	for id := range below {
		if conflicted[id] {
			out[id] = true
			continue
		}
		for a := range r.authChain(id) {
			if conflicted[a] {
				out[id] = true
				break
			}
		}
	}
	return out
}

// isPowerEvent reports a spec "power event": power levels, join rules, or a leave or ban of
// another user.
func isPowerEvent(p gomatrixserverlib.PDU) bool {
	if p.StateKey() == nil {
		return false
	}
	switch p.Type() {
	case spec.MRoomPowerLevels, spec.MRoomJoinRules:
		return p.StateKeyEquals("")
	case spec.MRoomMember:
		m, err := p.Membership()
		return err == nil && (m == spec.Leave || m == spec.Ban) && !p.StateKeyEquals(string(p.SenderID()))
	}
	return false
}

// powerOrdering sorts the events x by the reverse topological power ordering: the
// lexicographically smallest topological ordering of the auth_events DAG among them, found by
// Kahn's algorithm taking the smallest available event at each step (earliest first), where
// x < y when x's sender has the greater power level (from x's auth events), then the smaller
// origin_server_ts, then the smaller event ID.
func (r *resolver) powerOrdering(x map[string]bool) []gomatrixserverlib.PDU {
	pending := map[string]int{}         // event -> auth events in x not yet placed
	dependents := map[string][]string{} // event -> events in x citing it
	h := &powerHeap{}
	for id := range x {
		for _, a := range r.events[id].AuthEventIDs() {
			if x[a] {
				pending[id]++
				dependents[a] = append(dependents[a], id)
			}
		}
	}
	for id := range x {
		if pending[id] == 0 {
			heap.Push(h, r.powerKey(id))
		}
	}
	out := make([]gomatrixserverlib.PDU, 0, len(x))
	for h.Len() > 0 {
		k := heap.Pop(h).(powerKey)
		out = append(out, r.events[k.id])
		for _, d := range dependents[k.id] {
			if pending[d]--; pending[d] == 0 {
				heap.Push(h, r.powerKey(d))
			}
		}
	}
	return out
}

type powerKey struct {
	power int64
	ts    spec.Timestamp
	id    string
}

type powerHeap []powerKey

func (h powerHeap) Len() int { return len(h) }
func (h powerHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if a.power != b.power {
		return a.power > b.power
	}
	if a.ts != b.ts {
		return a.ts < b.ts
	}
	return a.id < b.id
}
func (h powerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *powerHeap) Push(v any)   { *h = append(*h, v.(powerKey)) }
func (h *powerHeap) Pop() any {
	old := *h
	v := old[len(old)-1]
	*h = old[:len(old)-1]
	return v
}

// powerKey returns the sort key of an event: its sender's power level according to the
// power levels in its auth events. Room creators of version 12 rooms outrank everyone; without
// power levels the room creator has 100, as the auth rules give them.
func (r *resolver) powerKey(id string) powerKey {
	p := r.events[id]
	k := powerKey{ts: p.OriginServerTS(), id: id}
	sender := p.SenderID()
	if gomatrixserverlib.MustGetRoomVersion(p.Version()).PrivilegedCreators() {
		for _, c := range gomatrixserverlib.CreatorsFromCreateEvent(r.create) {
			if c == string(sender) {
				k.power = gomatrixserverlib.CreatorPowerLevel
				return k
			}
		}
	}
	if pl := r.authEventOfType(p, spec.MRoomPowerLevels); pl != nil {
		if c, err := gomatrixserverlib.NewPowerLevelContentFromEvent(pl); err == nil {
			k.power = c.UserLevel(sender)
		}
	} else if sender == r.create.SenderID() {
		k.power = 100
	}
	return k
}

// authEventOfType returns p's known auth event of the type with an empty state key, or nil.
func (r *resolver) authEventOfType(p gomatrixserverlib.PDU, typ string) gomatrixserverlib.PDU {
	for _, a := range p.AuthEventIDs() {
		if e, ok := r.events[a]; ok && e.Type() == typ && e.StateKeyEquals("") {
			return e
		}
	}
	return nil
}

// mainlineOrdering sorts events by the mainline ordering based on the power levels event pl:
// the greater mainline position first, then the smaller origin_server_ts, then the smaller
// event ID. An event's mainline position is the index in pl's mainline (pl, its power levels
// auth event, and so on) of the first event of its own power levels chain found there, not
// counting the event itself; infinity when there is none.
func (r *resolver) mainlineOrdering(pl gomatrixserverlib.PDU, events []gomatrixserverlib.PDU) []gomatrixserverlib.PDU {
	index := map[string]int{}
	for i, p := 0, pl; p != nil; i, p = i+1, r.authEventOfType(p, spec.MRoomPowerLevels) {
		if _, loop := index[p.EventID()]; loop {
			break
		}
		index[p.EventID()] = i
	}
	pos := make(map[string]int, len(events))
	for _, e := range events {
		pos[e.EventID()] = math.MaxInt
		seen := map[string]bool{}
		for p := r.authEventOfType(e, spec.MRoomPowerLevels); p != nil && !seen[p.EventID()]; p = r.authEventOfType(p, spec.MRoomPowerLevels) {
			seen[p.EventID()] = true
			if i, ok := index[p.EventID()]; ok {
				pos[e.EventID()] = i
				break
			}
		}
	}
	out := append([]gomatrixserverlib.PDU(nil), events...)
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if pa, pb := pos[a.EventID()], pos[b.EventID()]; pa != pb {
			return pa > pb
		}
		if a.OriginServerTS() != b.OriginServerTS() {
			return a.OriginServerTS() < b.OriginServerTS()
		}
		return a.EventID() < b.EventID()
	})
	return out
}

// iterativeAuthChecks applies each event to state, in order, when the authorisation rules
// allow it against state. A key the rules need that state lacks is taken from the event's
// auth_events, unless that auth event is rejected; the create event, which room version 12
// events do not list, is always the room's.
func (r *resolver) iterativeAuthChecks(state stateMap, events []gomatrixserverlib.PDU) {
	for _, e := range events {
		if e.StateKey() == nil {
			continue
		}
		provider, _ := gomatrixserverlib.NewAuthEvents(nil)
		for _, k := range gomatrixserverlib.StateNeededForAuth([]gomatrixserverlib.PDU{e}).Tuples() {
			if p, ok := state[k]; ok {
				_ = provider.AddEvent(p)
			} else if p := r.authEventFor(e, k); p != nil {
				_ = provider.AddEvent(p)
			} else if k.EventType == spec.MRoomCreate {
				_ = provider.AddEvent(r.create)
			}
		}
		if ownedstate.Allowed(e, provider, userIDForSender) == nil {
			state[keyOf(e)] = e
		}
	}
}

// authEventFor returns e's auth event with key k when it is known and not rejected.
func (r *resolver) authEventFor(e gomatrixserverlib.PDU, k gomatrixserverlib.StateKeyTuple) gomatrixserverlib.PDU {
	for _, a := range e.AuthEventIDs() {
		if p, ok := r.events[a]; ok && p.StateKey() != nil && keyOf(p) == k && !r.rejected(a) {
			return p
		}
	}
	return nil
}
