package roomserver

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/roomserver/ownedstate"
	"github.com/lattice-chat/lattice/storage"
)

// Limits on what one received event may make the roomserver fetch, while it holds the room's
// lock: the room waits for the fetches.
const (
	maxMissingEvents = 20  // events asked for with get_missing_events, as Synapse and the spec's example do
	maxFetchDepth    = 3   // nested fetches (missing events of missing events) before falling back to /state_ids
	maxStateFetch    = 500 // events fetched one by one for a /state_ids answer
	maxFetchTotal    = 1000
	maxFetchTime     = 90 * time.Second
)

// RejectedError is the error of a remote event that failed the checks, or that could not be
// checked because what it refers to could not be fetched: the /send answer reports it for
// that PDU. (Only events that fail the auth rules are stored as rejected; the others may
// come again.)
type RejectedError struct{ Reason string }

func (e *RejectedError) Error() string { return e.Reason }

func rejected(format string, args ...any) error {
	return &RejectedError{Reason: fmt.Sprintf(format, args...)}
}

// remoteInput is one remote event on its way in, with what is known about where it came from.
type remoteInput struct {
	origin  spec.ServerName
	pdu     gomatrixserverlib.PDU
	forward bool // queue it for the other servers in the room (the resident side of send_join and co.)
	depth   int  // nesting of fetches that led to it
	// budget is how many more events the fetches for this received event (and those it led
	// to) may bring; shared by the nested inputs.
	budget *int
	// existing is the stored outlier this event promotes into the DAG, if any.
	existing *storage.Event
}

// spend takes n events from the input's fetch budget, reporting false when it is spent.
func (in remoteInput) spend(n int) bool {
	if in.budget == nil {
		return true
	}
	if *in.budget < n {
		return false
	}
	*in.budget -= n
	return true
}

// InputRemote processes an event another server sent (in a /send transaction): it must
// already have passed the format, signature and hash checks (federationapi's checkPDU). It
// runs the rest of the spec's "Checks performed on receipt of a PDU", in the spec's order:
//  1. the event is checked against its auth events (fetched from origin when unknown);
//  2. missing prev_events are fetched with get_missing_events, and where that does not close
//     the gap, the state before the missing events comes from /state_ids;
//  3. the event is checked against the state before it, which is state resolution of the
//     states after its prev_events where they differ;
//  4. it is soft-failed when it does not pass against the current state of the room.
//
// A rejected event is stored as rejected (never shown, never used) and returns a
// *RejectedError; a soft-failed one is stored but not shown and returns nil. The room's
// current state is the resolution of the states after its forward extremities.
func (s *Server) InputRemote(ctx context.Context, origin spec.ServerName, pdu gomatrixserverlib.PDU) error {
	r, err := s.lockRoom(ctx, pdu.RoomID().String())
	if errors.Is(err, errUnknownRoom) {
		return rejected("this server is not in room %s", pdu.RoomID().String())
	} else if err != nil {
		return err
	}
	if !s.hasState(r) {
		membership, ok := s.outOfRoomMembership(ctx, r, origin, pdu)
		var target, before string
		if ok {
			target = *pdu.StateKey()
			before = r.members[target]
		}
		r.unlock()
		if !ok {
			return rejected("this server is not in room %s", pdu.RoomID().String())
		}
		return s.storeOutOfRoomMembershipIf(ctx, pdu, pdu.JSON(), membership, func(r *room) bool {
			return !s.hasState(r) && r.members[target] == before
		})
	}
	defer r.unlock()
	ctx, cancel := context.WithTimeout(ctx, maxFetchTime)
	defer cancel()
	return s.retryConflicts(ctx, r.id, func() error {
		budget := maxFetchTotal
		return s.inputRemote(ctx, r, remoteInput{origin: origin, pdu: pdu, budget: &budget})
	})
}

// hasState reports whether this server holds the state of room r (it joined it once), rather
// than only an invite to it.
func (s *Server) hasState(r *room) bool {
	knid, _ := s.lookupStateKeyNID(context.Background(), storage.StateKey{Type: spec.MRoomCreate})
	_, ok := r.state[knid]
	return ok && knid != 0
}

// inputRemote is InputRemote with r locked.
func (s *Server) inputRemote(ctx context.Context, r *room, in remoteInput) error {
	pdu := in.pdu
	if pdu.Version() != r.version.Version() {
		return rejected("event %s is not of the room's version", pdu.EventID())
	}
	if known, err := s.db.Event(ctx, pdu.EventID()); err == nil {
		if known.Status == storage.StatusRejected {
			return rejected("event %s was rejected before", pdu.EventID())
		}
		if known.InDAG() || known.RoomNID != r.nid {
			return nil // already have it
		}
		// An outlier (learnt as the auth or state of other events) arriving as an event of
		// the room: it joins the DAG and the timeline when it extends the DAG this server
		// has (events older than this server's join stay outliers).
		extends, err := s.extendsDAG(ctx, r, pdu)
		if err != nil || !extends {
			return err
		}
		in.existing = known
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	// 1. Auth events: all known, none rejected, and the event passes against them.
	authPDUs, err := s.authEventsOf(ctx, r, in.origin, pdu)
	if err != nil {
		return err
	}
	if err := s.allowedBy(r, pdu, authPDUs); err != nil {
		return s.storeRejected(ctx, r, pdu, fmt.Sprintf("event %s fails auth against its auth events: %v", pdu.EventID(), err))
	}
	// 2. prev_events.
	if err := s.fetchMissingPrev(ctx, r, in); err != nil {
		return err
	}
	prevs, err := s.prevEvents(ctx, pdu)
	if err != nil {
		return err
	}
	// 3. The state before the event.
	before, err := s.stateBefore(ctx, r, prevs)
	if err != nil {
		return err
	}
	if err := s.allowedByKnownState(ctx, r, pdu, before, authPDUs); err != nil {
		return s.storeRejected(ctx, r, pdu, fmt.Sprintf("event %s fails auth against the state before it: %v", pdu.EventID(), err))
	}
	// 4. Soft failure against the current state, as it will be with the event's branch: the
	// state before the event may hold what the room's current state lacks (events this
	// server learnt only as state, through /state_ids), and the resolution of the two is
	// what the event would join.
	current := r.state
	if !sameState(before, r.state) {
		if current, err = s.resolve(ctx, r, []map[int64]int64{r.state, before}, nil); err != nil {
			return err
		}
	}
	status := ""
	if err := s.allowedByKnownState(ctx, r, pdu, current, authPDUs); err != nil {
		s.log.Info("remote event soft-failed", "event_id", pdu.EventID(), "room_id", r.id, "err", err)
		status = storage.StatusSoftFailed
	} else if signed, ok := s.policyRecommends(ctx, r, pdu); !ok {
		s.log.Info("remote event soft-failed: the room's policy server does not recommend it", "event_id", pdu.EventID(), "room_id", r.id)
		status = storage.StatusSoftFailed
	} else {
		in.pdu = signed
	}
	return s.persistRemote(ctx, r, in, prevs, before, status)
}

// extendsDAG reports whether one of pdu's prev_events is in the room's DAG (accepted, with
// the state before it known), or is itself to be fetched: whether pdu continues the history
// this server has rather than predating it.
func (s *Server) extendsDAG(ctx context.Context, r *room, pdu gomatrixserverlib.PDU) (bool, error) {
	for _, id := range pdu.PrevEventIDs() {
		ev, err := s.db.Event(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		} else if err != nil {
			return false, err
		}
		if ev.RoomNID == r.nid && ev.InDAG() {
			return true, nil
		}
	}
	return false, nil
}

// allowedBy checks pdu against the given auth events. Room version 12 events do not list the
// create event, which is then taken from the room's state.
func (s *Server) allowedBy(r *room, pdu gomatrixserverlib.PDU, authPDUs []gomatrixserverlib.PDU) error {
	provider, err := gomatrixserverlib.NewAuthEvents(authPDUs)
	if err != nil {
		return err
	}
	if c, _ := provider.Create(); c == nil && pdu.Type() != spec.MRoomCreate {
		if create, err := s.roomCreateEvent(context.Background(), r); err == nil && create != nil {
			_ = provider.AddEvent(create)
		}
	}
	return ownedstate.Allowed(pdu, provider, userIDForSender)
}

// roomCreateEvent returns the room's create event.
func (s *Server) roomCreateEvent(ctx context.Context, r *room) (gomatrixserverlib.PDU, error) {
	evs, err := s.stateEvents(ctx, r.version, r.state, []storage.StateKey{{Type: spec.MRoomCreate}})
	if err != nil || len(evs) == 0 {
		return nil, err
	}
	return evs[0], nil
}

// allowedByState checks pdu against the auth events the auth rules select from state.
func (s *Server) allowedByState(ctx context.Context, r *room, pdu gomatrixserverlib.PDU, state map[int64]int64) error {
	needed := gomatrixserverlib.StateNeededForAuth([]gomatrixserverlib.PDU{pdu})
	var keys []storage.StateKey
	for _, t := range needed.Tuples() {
		keys = append(keys, storage.StateKey{Type: t.EventType, StateKey: t.StateKey})
	}
	authPDUs, err := s.stateEvents(ctx, r.version, state, keys)
	if err != nil {
		return err
	}
	return s.allowedBy(r, pdu, authPDUs)
}

// allowedByKnownState is allowedByState, except in a room whose state is partial (joined
// with omit_members): the state lacks most memberships, so an event whose sender's (or
// target's) membership the state does not hold is checked with the event's own auth event
// for it instead, which passed step 1 (MSC3902: events are authorised against the partial
// state as far as it goes; the resync's completed state judges the events after it).
func (s *Server) allowedByKnownState(ctx context.Context, r *room, pdu gomatrixserverlib.PDU, state map[int64]int64, authPDUs []gomatrixserverlib.PDU) error {
	if r.partial == nil {
		return s.allowedByState(ctx, r, pdu, state)
	}
	needed := gomatrixserverlib.StateNeededForAuth([]gomatrixserverlib.PDU{pdu})
	var keys []storage.StateKey
	for _, t := range needed.Tuples() {
		keys = append(keys, storage.StateKey{Type: t.EventType, StateKey: t.StateKey})
	}
	fromState, err := s.stateEvents(ctx, r.version, state, keys)
	if err != nil {
		return err
	}
	have := map[storage.StateKey]bool{}
	for _, p := range fromState {
		if p.StateKey() != nil {
			have[storage.StateKey{Type: p.Type(), StateKey: *p.StateKey()}] = true
		}
	}
	for _, p := range authPDUs {
		if p.Type() != spec.MRoomMember || p.StateKey() == nil {
			continue
		}
		if k := (storage.StateKey{Type: p.Type(), StateKey: *p.StateKey()}); !have[k] {
			have[k] = true
			fromState = append(fromState, p)
		}
	}
	return s.allowedBy(r, pdu, fromState)
}

// authEventsOf returns the auth events of pdu, fetching the unknown ones (with their own auth
// chains) from origin and storing them as outliers. An auth event that was rejected
// rejects pdu.
func (s *Server) authEventsOf(ctx context.Context, r *room, origin spec.ServerName, pdu gomatrixserverlib.PDU) ([]gomatrixserverlib.PDU, error) {
	ids := pdu.AuthEventIDs()
	known, missing, err := s.knownEvents(ctx, r, ids)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		if s.remote == nil {
			return nil, rejected("event %s has unknown auth events", pdu.EventID())
		}
		chain, err := s.remote.EventAuth(ctx, origin, r.version, r.id, pdu.EventID())
		if err != nil {
			return nil, rejected("could not fetch the auth chain of %s from %s: %v", pdu.EventID(), origin, err)
		}
		if err := s.storeOutliers(ctx, r, chain); err != nil {
			return nil, err
		}
		if known, missing, err = s.knownEvents(ctx, r, ids); err != nil {
			return nil, err
		}
		if len(missing) > 0 {
			return nil, rejected("event %s has auth events nobody could give: %v", pdu.EventID(), missing)
		}
	}
	out := make([]gomatrixserverlib.PDU, 0, len(known))
	for _, k := range known {
		if k.ev.Status == storage.StatusRejected {
			return nil, s.storeRejected(ctx, r, pdu, fmt.Sprintf("event %s has a rejected auth event %s", pdu.EventID(), k.ev.EventID))
		}
		if k.ev.RoomNID != r.nid {
			return nil, s.storeRejected(ctx, r, pdu, fmt.Sprintf("event %s has an auth event %s of another room", pdu.EventID(), k.ev.EventID))
		}
		out = append(out, k.pdu)
	}
	return out, nil
}

// knownEvent is a stored event with its parsed form.
type knownEvent struct {
	ev  *storage.Event
	pdu gomatrixserverlib.PDU
}

// storedPDU returns a stored event of room r with its parsed form, or ErrNotFound.
func (s *Server) storedPDU(ctx context.Context, r *room, id string) (knownEvent, error) {
	ev, err := s.db.Event(ctx, id)
	if err != nil {
		return knownEvent{}, err
	}
	m, err := s.pdusByNID(ctx, r.version, []int64{ev.NID})
	if err != nil {
		return knownEvent{}, err
	}
	return knownEvent{ev: ev, pdu: m[ev.NID]}, nil
}

// knownEvents splits ids into the stored events and the unknown IDs.
func (s *Server) knownEvents(ctx context.Context, r *room, ids []string) ([]knownEvent, []string, error) {
	var known []knownEvent
	var missing []string
	for _, id := range ids {
		k, err := s.storedPDU(ctx, r, id)
		if errors.Is(err, storage.ErrNotFound) {
			missing = append(missing, id)
			continue
		} else if err != nil {
			return nil, nil, err
		}
		known = append(known, k)
	}
	return known, missing, nil
}

// storeOutliers stores events known only as the auth or state of other events: each is
// checked against its own auth events (oldest first) and stored as an outlier, or as rejected
// when it fails.
func (s *Server) storeOutliers(ctx context.Context, r *room, pdus []gomatrixserverlib.PDU) error {
	sorted := append([]gomatrixserverlib.PDU(nil), pdus...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Depth() < sorted[j].Depth() })
	byID := make(map[string]gomatrixserverlib.PDU, len(sorted))
	for _, p := range sorted {
		byID[p.EventID()] = p
	}
	for _, p := range sorted {
		if p.RoomID().String() != r.id {
			continue
		}
		if _, err := s.db.Event(ctx, p.EventID()); err == nil {
			continue
		} else if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		status := storage.StatusOutlier
		known, missing, err := s.knownEvents(ctx, r, p.AuthEventIDs())
		if err != nil {
			return err
		}
		var auth []gomatrixserverlib.PDU
		for _, k := range known {
			if k.ev.Status == storage.StatusRejected {
				status = storage.StatusRejected
			}
			auth = append(auth, k.pdu)
		}
		if len(missing) > 0 {
			// Not judged without its auth events: left out, so that a fuller answer later
			// (or from another server) can still bring it in.
			s.log.Info("remote auth event left out: its own auth events are missing", "event_id", p.EventID(), "room_id", r.id, "missing", missing)
			continue
		} else if err := s.allowedBy(r, p, auth); err != nil {
			status = storage.StatusRejected
		}
		if status == storage.StatusRejected {
			s.log.Info("remote auth event rejected", "event_id", p.EventID(), "room_id", r.id)
		}
		if err := s.insertBare(ctx, r, p, status, 0); err != nil {
			return err
		}
	}
	return nil
}

// insertBare stores an event that takes no part in the room's current state (an outlier or a
// rejected event), with the given state-before snapshot (0: unknown).
func (s *Server) insertBare(ctx context.Context, r *room, p gomatrixserverlib.PDU, status string, stateBefore int64) error {
	var newKey *storage.StateKey
	var newNID int64
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		ev := &storage.Event{
			EventID: p.EventID(), RoomNID: r.nid, Type: p.Type(), Sender: string(p.SenderID()),
			Depth: p.Depth(), OriginTS: int64(p.OriginServerTS()), StateBeforeNID: stateBefore,
			Status: status, JSON: p.JSON(),
		}
		if sk := p.StateKey(); sk != nil {
			key := storage.StateKey{Type: p.Type(), StateKey: *sk}
			nid, err := s.stateKeyNID(ctx, tx, key)
			if err != nil {
				return err
			}
			ev.StateKeyNID, newKey, newNID = nid, &key, nid
		}
		_, err := tx.InsertEvent(ctx, ev)
		if errors.Is(err, storage.ErrConflict) {
			return nil
		}
		return err
	})
	if err == nil && newKey != nil {
		s.keys.remember(*newKey, newNID)
	}
	return err
}

// storeRejected stores pdu as rejected, so that it is not fetched or checked again, and
// returns the rejection.
func (s *Server) storeRejected(ctx context.Context, r *room, pdu gomatrixserverlib.PDU, reason string) error {
	s.log.Info("remote event rejected", "event_id", pdu.EventID(), "room_id", r.id, "reason", reason)
	if err := s.insertBare(ctx, r, pdu, storage.StatusRejected, 0); err != nil {
		return err
	}
	return rejected("%s", reason)
}

// fetchMissingPrev makes sure every prev_event of in.pdu is stored with a known state before
// it: first by asking origin for the missing events between the room's forward extremities
// and the event (get_missing_events), processed oldest first through the same checks; then,
// for prev_events still missing, by fetching the event and the state before it (/state_ids).
func (s *Server) fetchMissingPrev(ctx context.Context, r *room, in remoteInput) error {
	missing, err := s.missingPrev(ctx, in.pdu, r.nid)
	if err != nil || len(missing) == 0 {
		return err
	}
	if s.remote == nil {
		return rejected("event %s has unknown prev_events", in.pdu.EventID())
	}
	if in.depth < maxFetchDepth {
		earliest := make([]string, 0, len(r.extremities))
		for _, e := range r.extremities {
			earliest = append(earliest, e.id)
		}
		minDepth := int64(0)
		got, err := s.remote.MissingEvents(ctx, in.origin, r.version, r.id, earliest, []string{in.pdu.EventID()}, maxMissingEvents, minDepth)
		if err != nil {
			s.log.Warn("get_missing_events failed", "origin", in.origin, "room_id", r.id, "err", err)
		}
		if !in.spend(len(got)) {
			return rejected("event %s needs more missing events than this server fetches for one event", in.pdu.EventID())
		}
		sort.SliceStable(got, func(i, j int) bool { return got[i].Depth() < got[j].Depth() })
		for _, p := range got {
			if p.RoomID().String() != r.id || p.EventID() == in.pdu.EventID() {
				continue
			}
			err := s.inputRemote(ctx, r, remoteInput{origin: in.origin, pdu: p, depth: in.depth + 1, budget: in.budget})
			var rej *RejectedError
			if err != nil && !errors.As(err, &rej) {
				return err
			}
		}
		if missing, err = s.missingPrev(ctx, in.pdu, r.nid); err != nil || len(missing) == 0 {
			return err
		}
	}
	// The gap is too large: take the state before each missing prev_event from origin.
	for _, id := range missing {
		if err := s.fetchWithState(ctx, r, in, id); err != nil {
			return err
		}
	}
	return nil
}

// missingPrev returns the prev_events of pdu (an event of the room pduRoomNID) that are not
// stored with a known state before them.
func (s *Server) missingPrev(ctx context.Context, pdu gomatrixserverlib.PDU, pduRoomNID int64) ([]string, error) {
	var missing []string
	for _, id := range pdu.PrevEventIDs() {
		ev, err := s.db.Event(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			missing = append(missing, id)
			continue
		} else if err != nil {
			return nil, err
		}
		if ev.RoomNID != pduRoomNID {
			return nil, rejected("event %s has a prev_event %s of another room", pdu.EventID(), id)
		}
		if !hasStateBefore(ev) {
			missing = append(missing, id)
		}
	}
	return missing, nil
}

// hasStateBefore reports whether the stored event's state_before_nid is the state before it.
func hasStateBefore(ev *storage.Event) bool {
	return ev.InDAG() || ev.StateBeforeNID != 0 || ev.Type == spec.MRoomCreate
}

// fetchWithState fetches event id and the room state before it from server, and stores the
// event as an outlier whose state before it is known, so that it can be a prev_event.
func (s *Server) fetchWithState(ctx context.Context, r *room, in remoteInput, id string) error {
	server := in.origin
	stateIDs, authIDs, err := s.remote.StateIDs(ctx, server, r.id, id)
	if err != nil {
		return rejected("could not fetch the state at %s from %s: %v", id, server, err)
	}
	var want []string
	seen := map[string]bool{}
	for _, eid := range append(append([]string{id}, authIDs...), stateIDs...) {
		if seen[eid] {
			continue
		}
		seen[eid] = true
		if _, err := s.db.Event(ctx, eid); errors.Is(err, storage.ErrNotFound) {
			want = append(want, eid)
		} else if err != nil {
			return err
		}
	}
	if len(want) > maxStateFetch || !in.spend(len(want)) {
		return rejected("the state before %s is too large to fetch (%d events)", id, len(want))
	}
	var fetched []gomatrixserverlib.PDU
	var target gomatrixserverlib.PDU
	for _, eid := range want {
		p, err := s.remote.Event(ctx, server, r.version, eid)
		if err != nil {
			return rejected("could not fetch %s from %s: %v", eid, server, err)
		}
		if eid == id {
			target = p
			continue
		}
		fetched = append(fetched, p)
	}
	if err := s.storeOutliers(ctx, r, fetched); err != nil {
		return err
	}
	if err := s.completeAuthChains(ctx, r, in, server, fetched); err != nil {
		return err
	}
	state := map[int64]int64{}
	for _, eid := range stateIDs {
		ev, err := s.db.Event(ctx, eid)
		if errors.Is(err, storage.ErrNotFound) {
			continue // left out by storeOutliers: its auth events could not be had
		} else if err != nil {
			return fmt.Errorf("state event %s: %w", eid, err)
		}
		if ev.IsState() && ev.Status != storage.StatusRejected && ev.RoomNID == r.nid {
			state[ev.StateKeyNID] = ev.NID
		}
	}
	if target == nil {
		// Stored before, without the state before it.
		ev, err := s.db.Event(ctx, id)
		if err != nil {
			return err
		}
		if ev.RoomNID != r.nid || hasStateBefore(ev) {
			return rejected("event %s is not an outlier of room %s", id, r.id)
		}
		snap, err := s.insertWholeSnapshot(ctx, r, state)
		if err != nil {
			return err
		}
		return s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.SetStateBefore(ctx, ev.NID, snap) })
	}
	snap, err := s.insertWholeSnapshot(ctx, r, state)
	if err != nil {
		return err
	}
	status := storage.StatusOutlier
	if err := s.allowedByState(ctx, r, target, state); err != nil {
		status = storage.StatusRejected
	}
	return s.insertBare(ctx, r, target, status, snap)
}

func (s *Server) insertWholeSnapshot(ctx context.Context, r *room, state map[int64]int64) (int64, error) {
	var nid int64
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		var err error
		nid, err = tx.InsertSnapshot(ctx, r.nid, storage.Snapshot{ChainLen: 1, Entries: state})
		return err
	})
	if err == nil {
		s.snapshots.put(nid, &snapshotEntry{state: copyState(state), chainLen: 1})
	}
	return nid, err
}

// prevEvents returns the stored prev_events of pdu (all known by now).
func (s *Server) prevEvents(ctx context.Context, pdu gomatrixserverlib.PDU) ([]*storage.Event, error) {
	var out []*storage.Event
	for _, id := range pdu.PrevEventIDs() {
		ev, err := s.db.Event(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("prev event %s: %w", id, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

// stateAfter returns the state after a stored event whose state before is known. Do not
// modify it.
func (s *Server) stateAfter(ctx context.Context, ev *storage.Event) (map[int64]int64, error) {
	before, _, err := s.stateAt(ctx, ev.StateBeforeNID)
	if err != nil {
		return nil, err
	}
	if !ev.IsState() || ev.Status == storage.StatusRejected {
		return before, nil
	}
	if before[ev.StateKeyNID] == ev.NID {
		return before, nil
	}
	after := copyState(before)
	after[ev.StateKeyNID] = ev.NID
	return after, nil
}

// stateBefore returns the state before an event with the given prev_events: the state after
// the one prev_event, or the resolution of the states after each.
func (s *Server) stateBefore(ctx context.Context, r *room, prevs []*storage.Event) (map[int64]int64, error) {
	var sets []map[int64]int64
	for _, p := range prevs {
		st, err := s.stateAfter(ctx, p)
		if err != nil {
			return nil, err
		}
		sets = append(sets, st)
	}
	return s.resolve(ctx, r, sets, nil)
}

// resolve resolves state sets (state key NID -> event NID) of room r into one. Identical sets
// need no resolution. newKeys are state key NIDs created by the caller's open transaction.
func (s *Server) resolve(ctx context.Context, r *room, sets []map[int64]int64, newKeys map[storage.StateKey]int64) (map[int64]int64, error) {
	if len(sets) == 0 {
		return map[int64]int64{}, nil
	}
	conflicted := false
	for _, set := range sets[1:] {
		if !sameState(sets[0], set) {
			conflicted = true
			break
		}
	}
	if !conflicted {
		return sets[0], nil
	}
	var stateSets [][]gomatrixserverlib.PDU
	nidOf := map[string]int64{}
	for _, set := range sets {
		nids := make([]int64, 0, len(set))
		for _, nid := range set {
			nids = append(nids, nid)
		}
		m, err := s.pdusByNID(ctx, r.version, nids)
		if err != nil {
			return nil, err
		}
		var pdus []gomatrixserverlib.PDU
		for nid, p := range m {
			pdus = append(pdus, p)
			nidOf[p.EventID()] = nid
		}
		stateSets = append(stateSets, pdus)
	}
	var all []gomatrixserverlib.PDU
	for _, set := range stateSets {
		all = append(all, set...)
	}
	chain, rejectedIDs, err := s.authChainPDUs(ctx, r, all)
	if err != nil {
		return nil, err
	}
	resolved, err := resolveState(r.version, stateSets, chain, func(id string) bool { return rejectedIDs[id] })
	if err != nil {
		return nil, fmt.Errorf("resolve state of %s: %w", r.id, err)
	}
	out := make(map[int64]int64, len(resolved))
	for _, p := range resolved {
		nid, ok := nidOf[p.EventID()]
		if !ok {
			ev, err := s.db.Event(ctx, p.EventID())
			if err != nil {
				return nil, err
			}
			nid = ev.NID
		}
		key := storage.StateKey{Type: p.Type(), StateKey: *p.StateKey()}
		knid, ok := newKeys[key]
		if !ok {
			if knid, err = s.lookupStateKeyNID(ctx, key); err != nil {
				return nil, err
			}
		}
		out[knid] = nid
	}
	return out, nil
}

func sameState(a, b map[int64]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// authChainPDUs returns the stored auth chains of the given events, and which events of the
// chains are rejected.
func (s *Server) authChainPDUs(ctx context.Context, r *room, pdus []gomatrixserverlib.PDU) ([]gomatrixserverlib.PDU, map[string]bool, error) {
	var first []string
	for _, p := range pdus {
		first = append(first, p.AuthEventIDs()...)
	}
	evs, err := s.authChainEvents(ctx, r.version, first)
	if err != nil {
		return nil, nil, err
	}
	rejectedIDs := map[string]bool{}
	for _, ev := range evs {
		if ev.Status == storage.StatusRejected {
			rejectedIDs[ev.EventID] = true
		}
	}
	out, err := s.pdusOf(ctx, r.version, evs)
	return out, rejectedIDs, err
}

// persistRemote stores an accepted or soft-failed remote event whose state before is known.
// An accepted event replaces its prev_events among the forward extremities, and the current
// state becomes the resolution of the states after the extremities.
func (s *Server) persistRemote(ctx context.Context, r *room, in remoteInput, prevs []*storage.Event, before map[int64]int64, status string) error {
	pdu := in.pdu
	var parent int64
	var parentState map[int64]int64
	if len(prevs) > 0 {
		parent = prevs[0].StateBeforeNID
		var err error
		if parentState, _, err = s.stateAt(ctx, parent); err != nil {
			return err
		}
	}
	var newExts []extremity
	var extStates []map[int64]int64
	if status == "" {
		prevIDs := map[string]bool{}
		for _, id := range pdu.PrevEventIDs() {
			prevIDs[id] = true
		}
		for _, e := range r.extremities {
			if !prevIDs[e.id] {
				newExts = append(newExts, e)
			}
		}
		for _, e := range newExts {
			evs, err := s.db.EventsByNID(ctx, []int64{e.nid})
			if err != nil || len(evs) == 0 {
				return fmt.Errorf("forward extremity %s: %v", e.id, err)
			}
			st, err := s.stateAfter(ctx, evs[0])
			if err != nil {
				return err
			}
			extStates = append(extStates, st)
		}
	}
	var (
		ev          *storage.Event
		newState    map[int64]int64
		snapAfter   int64
		chainAfter  int
		newKeys     = map[storage.StateKey]int64{}
		memberships = map[string]string{}
		h           head
	)
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		newKeys, memberships, h = map[storage.StateKey]int64{}, map[string]string{}, head{}
		if err := tx.LockEventStream(ctx); err != nil {
			return err
		}
		beforeNID, err := s.writeSnapshot(ctx, tx, r, parent, parentState, before)
		if err != nil {
			return err
		}
		ev = &storage.Event{
			EventID: pdu.EventID(), RoomNID: r.nid, Type: pdu.Type(), Sender: string(pdu.SenderID()),
			Depth: pdu.Depth(), OriginTS: int64(pdu.OriginServerTS()), StateBeforeNID: beforeNID,
			Status: status, JSON: pdu.JSON(), StickyUntil: stickyUntil(pdu, s.now()),
		}
		var key storage.StateKey
		if sk := pdu.StateKey(); sk != nil {
			key = storage.StateKey{Type: pdu.Type(), StateKey: *sk}
			nid, err := s.stateKeyNID(ctx, tx, key)
			if err != nil {
				return err
			}
			newKeys[key] = nid
			ev.StateKeyNID = nid
			ev.ReplacesNID = before[nid]
		}
		if in.existing != nil {
			ev.NID = in.existing.NID
			if err := tx.PromoteOutlier(ctx, ev.NID, status, ev.StateBeforeNID, ev.ReplacesNID); err != nil {
				return err
			}
		} else if _, err := tx.InsertEvent(ctx, ev); err != nil {
			return err
		}
		if status != "" {
			return nil
		}
		// Resolution reads events through the cache, which must hold the one not yet committed.
		s.pdus.put(ev.NID, pdu)
		// The state after the event, then the current state over every extremity.
		after := before
		if ev.IsState() {
			after = copyState(before)
			after[ev.StateKeyNID] = ev.NID
		}
		newState = after
		if len(extStates) > 0 {
			if newState, err = s.resolve(ctx, r, append(extStates, after), newKeys); err != nil {
				return err
			}
		}
		changes := map[int64]int64{}
		for k, v := range newState {
			if r.state[k] != v {
				changes[k] = v
			}
		}
		for k := range r.state {
			if _, ok := newState[k]; !ok {
				changes[k] = 0
			}
		}
		snapAfter, chainAfter = r.snapshot, r.chainLen
		if len(changes) > 0 {
			snap := storage.Snapshot{Parent: r.snapshot, ChainLen: r.chainLen + 1, Entries: changes}
			if r.snapshot == 0 || snap.ChainLen > maxChainLen {
				snap = storage.Snapshot{ChainLen: 1, Entries: newState}
			}
			if snapAfter, err = tx.InsertSnapshot(ctx, r.nid, snap); err != nil {
				return err
			}
			chainAfter = snap.ChainLen
			if err := tx.SetCurrentState(ctx, r.nid, changes); err != nil {
				return err
			}
			if err := s.membershipChanges(ctx, tx, r, changes, newKeys, memberships); err != nil {
				return err
			}
		}
		if ev.IsState() && changes[ev.StateKeyNID] == ev.NID {
			// A remote user's state cancels local users' delayed events for it (MSC4140,
			// delayed.go), as a local user's does.
			if err := tx.CancelDelayedStateBy(ctx, r.id, key.Type, key.StateKey, ev.Sender, s.now().UnixMilli()); err != nil {
				return err
			}
		}
		if err := tx.SetRoomStateNID(ctx, ev.NID, snapAfter); err != nil {
			return err
		}
		exts := []int64{ev.NID}
		for _, e := range newExts {
			exts = append(exts, e.nid)
		}
		if err := tx.SetForwardExtremities(ctx, r.nid, exts); err != nil {
			return err
		}
		if err := storeRelation(ctx, tx, ev, pdu); err != nil {
			return err
		}
		if in.forward {
			if err := s.queueOutbound(ctx, tx, r, ev, key, memberships, &h, in.origin); err != nil {
				return err
			}
		}
		if err := s.pushActions(ctx, tx, r, ev, pdu, memberships, &h); err != nil {
			return err
		}
		if err := storePushes(ctx, tx, &h); err != nil {
			return err
		}
		if k, text := storage.SearchText(ev.Type, pdu.Content()); text != "" {
			if err := tx.IndexEvent(ctx, ev.NID, r.nid, k, text); err != nil {
				return err
			}
		}
		if pdu.Type() == spec.MRoomRedaction {
			if err := s.applyRemoteRedaction(ctx, tx, r, ev, pdu); err != nil {
				return err
			}
		}
		return tx.SetRoomState(ctx, r.nid, snapAfter, max(r.maxDepth, trustedDepth(ev.Depth, prevs)))
	})
	if err != nil {
		if ev != nil && ev.NID != 0 {
			// Rolled back: SQLite hands the same NID to the next event.
			s.pdus.forget(ev.NID)
		}
		return err
	}
	for k, nid := range newKeys {
		s.keys.remember(k, nid)
	}
	s.pdus.put(ev.NID, pdu)
	if status != "" {
		return nil
	}
	if snapAfter != r.snapshot {
		s.snapshots.put(snapAfter, &snapshotEntry{state: newState, chainLen: chainAfter})
	}
	r.state, r.snapshot, r.chainLen = newState, snapAfter, chainAfter
	r.extremities = append([]extremity{{nid: ev.NID, id: ev.EventID}}, newExts...)
	r.maxDepth = max(r.maxDepth, trustedDepth(ev.Depth, prevs))
	if h.covered != nil {
		r.pushCovered = h.covered
	}
	notify := make([]string, 0, len(r.members)+len(memberships))
	for u, m := range r.members {
		if (m == spec.Join || m == spec.Invite) && s.isLocal(u) {
			notify = append(notify, u)
		}
	}
	for u, m := range memberships {
		r.pushMembers = nil
		if m == "" {
			delete(r.members, u)
		} else {
			r.members[u] = m
		}
		if s.isLocal(u) {
			notify = append(notify, u)
		}
	}
	if s.listener != nil {
		s.listener.EventsCommitted(ev.NID, notify)
	}
	for d := range h.outbound {
		s.cfg.Outbound.Wake(d)
	}
	return nil
}

// trustedDepth is the depth a remote event counts for when this server picks the depth of
// its next event: the depth it claims, but no more than one past its deepest prev_event, so
// that an event claiming a huge depth cannot push the room's depths out of range.
func trustedDepth(claimed int64, prevs []*storage.Event) int64 {
	var deepest int64
	for _, p := range prevs {
		deepest = max(deepest, p.Depth)
	}
	return min(claimed, deepest+1)
}

// writeSnapshot stores state as a snapshot: a delta from parent (whose state is parentState)
// when the chain allows, else whole. It returns parent itself when nothing differs.
func (s *Server) writeSnapshot(ctx context.Context, tx *storage.Tx, r *room, parent int64, parentState, state map[int64]int64) (int64, error) {
	if parent != 0 && sameState(parentState, state) {
		return parent, nil
	}
	changes := map[int64]int64{}
	for k, v := range state {
		if parentState[k] != v {
			changes[k] = v
		}
	}
	for k := range parentState {
		if _, ok := state[k]; !ok {
			changes[k] = 0
		}
	}
	chainLen := 1
	if parent != 0 {
		if _, cl, err := s.stateAt(ctx, parent); err == nil {
			chainLen = cl + 1
		}
	}
	snap := storage.Snapshot{Parent: parent, ChainLen: chainLen, Entries: changes}
	if parent == 0 || chainLen > maxChainLen {
		snap = storage.Snapshot{ChainLen: 1, Entries: state}
	}
	return tx.InsertSnapshot(ctx, r.nid, snap)
}

// membershipChanges records the memberships that changed with the current state.
func (s *Server) membershipChanges(ctx context.Context, tx *storage.Tx, r *room, changes map[int64]int64, newKeys map[storage.StateKey]int64, memberships map[string]string) error {
	fresh := map[int64]storage.StateKey{}
	for k, nid := range newKeys {
		fresh[nid] = k
	}
	var nids []int64
	for knid, evNID := range changes {
		key, ok := fresh[knid]
		if !ok {
			var err error
			if key, err = s.StateKey(ctx, knid); err != nil {
				return err
			}
		}
		if key.Type != spec.MRoomMember || evNID == 0 {
			continue
		}
		nids = append(nids, evNID)
	}
	if len(nids) == 0 {
		return nil
	}
	m, err := s.pdusFrom(ctx, tx, r.version, nids)
	if err != nil {
		return err
	}
	for nid, p := range m {
		membership, err := p.Membership()
		if err != nil || p.StateKey() == nil {
			continue
		}
		memberships[*p.StateKey()] = membership
		if err := tx.SetMembership(ctx, r.nid, *p.StateKey(), membership, nid); err != nil {
			return err
		}
	}
	return nil
}

// applyRemoteRedaction redacts the target of a remote redaction when the redaction may apply:
// the target is in the room, and its sender's server is the redaction's sender's server or
// the redacter has the redact power level.
func (s *Server) applyRemoteRedaction(ctx context.Context, tx *storage.Tx, r *room, ev *storage.Event, pdu gomatrixserverlib.PDU) error {
	target, err := tx.Event(ctx, redactsOf(pdu))
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if target.RoomNID != r.nid || target.RedactedBy != "" {
		return nil
	}
	if serverOf(target.Sender) != serverOf(ev.Sender) {
		pl, err := s.powerLevels(ctx, r)
		if err != nil {
			return err
		}
		if s.userLevel(r, pl, ev.Sender) < pl.Redact {
			return nil
		}
	}
	s.pdus.forget(target.NID)
	return redactStored(ctx, tx, r, target, ev.EventID)
}

func serverOf(userID string) string {
	if i := strings.IndexByte(userID, ':'); i >= 0 {
		return userID[i+1:]
	}
	return ""
}
