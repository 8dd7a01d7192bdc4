package roomserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

	"github.com/lattice-chat/lattice/roomserver/ownedstate"
	"github.com/lattice-chat/lattice/storage"
)

// maxEventBytes is the spec's limit on the size of a PDU.
const maxEventBytes = 65536

// eventRequest is a local event to build, authorise and persist.
type eventRequest struct {
	Sender    string
	Type      string
	StateKey  *string
	Content   json.RawMessage
	Redacts   string // pre-v11 rooms carry it at the top level
	TxnDevice string
	TxnID     string
	TS        int64 // origin_server_ts in ms; 0: now
	// StickyMS, when set, makes the event sticky for that many ms (MSC4354).
	StickyMS *int64
}

// submit builds, signs, authorises and persists one local event in room r, whose lock the
// caller holds. A repeated (sender, device, txn ID) returns the event first sent with it.
func (s *Server) submit(ctx context.Context, r *room, req eventRequest) (*storage.Event, error) {
	res := s.submitBatch(ctx, r, []eventRequest{req})
	return res[0].ev, res[0].err
}

// result is the outcome of one event request.
type result struct {
	ev  *storage.Event
	err error
}

// pending is an event built and authorised, waiting to be committed.
type pending struct {
	idx    int // index of its request
	req    eventRequest
	pdu    gomatrixserverlib.PDU
	target *storage.Event // the event a redaction applies to
}

// submitBatch builds and commits events of room r (locked by the caller) in order, in one
// transaction, each event's prev_events being the one before it. Only a batch of message
// events (no state, no redactions) may have more than one event, since every event of the
// batch is authorised against the state before the batch.
//  1. prev_events are the forward extremities, depth one more than the deepest of them;
//  2. auth_events are selected from the current state (gomatrixserverlib.StateNeeded);
//  3. the event is hashed and signed with the server key;
//  4. it must pass the auth rules against its auth events (and so the current state);
//  5. the events, state after them, extremities and transaction IDs commit together.
//
// A request that fails gets its own error; the others go on.
func (s *Server) submitBatch(ctx context.Context, r *room, reqs []eventRequest) []result {
	results := make([]result, len(reqs))
	cited, _ := citedExtremities(r.extremities)
	prev := make([]string, 0, len(cited))
	for _, e := range cited {
		prev = append(prev, e.id)
	}
	depth := min(r.maxDepth+1, maxEventDepth)
	ps, usesPolicy := s.roomPolicyServer(ctx, r)
	var batch []*pending
	seenTxn := map[string]int{}
	for i, req := range reqs {
		if req.TxnID != "" {
			key := req.Sender + "\x00" + req.TxnDevice + "\x00" + req.TxnID
			if j, ok := seenTxn[key]; ok {
				results[i].err = errSameTxn(j)
				continue
			}
			seenTxn[key] = i
			if eventID, err := s.db.TxnEvent(ctx, req.Sender, req.TxnDevice, r.nid, req.TxnID); err == nil {
				results[i].ev, results[i].err = s.db.Event(ctx, eventID)
				continue
			} else if !errors.Is(err, storage.ErrNotFound) {
				results[i].err = err
				continue
			}
		}
		if ev, err := s.unchangedState(ctx, r, req); err != nil || ev != nil {
			results[i].ev, results[i].err = ev, err
			continue
		}
		pdu, err := s.build(ctx, r, req, prev, depth)
		if err != nil {
			results[i].err = err
			continue
		}
		if err := s.checkRelation(ctx, r.nid, pdu); err != nil {
			results[i].err = err
			continue
		}
		if target, ok := inviteTarget(pdu); ok && s.isLocal(target) && s.InvitePermissions(ctx, target).Verdict(req.Sender) == InviteBlock {
			results[i].err = ErrInviteBlocked
			continue
		}
		if s.remote != nil && isRemoteInvite(pdu, s.cfg.ServerName) {
			if pdu, err = s.remoteInvite(ctx, r, pdu); err != nil {
				results[i].err = err
				continue
			}
		}
		if usesPolicy && s.remote != nil && needsPolicy(pdu) {
			// The room's policy server signs the event before anyone sees it; its refusal
			// is the client's answer.
			if pdu, err = s.policySigned(ctx, r, ps, pdu); err != nil {
				results[i].err = err
				continue
			}
		}
		p := &pending{idx: i, req: req, pdu: pdu}
		if pdu.Type() == spec.MRoomRedaction {
			if p.target, err = s.redactionTarget(ctx, r, pdu); err != nil {
				results[i].err = err
				continue
			}
		}
		batch = append(batch, p)
		prev, depth = []string{pdu.EventID()}, min(depth+1, maxEventDepth)
	}
	if len(batch) > 0 {
		evs, err := s.persist(ctx, r, batch)
		for j, p := range batch {
			if err != nil {
				results[p.idx].err = err
			} else {
				results[p.idx].ev = evs[j]
			}
		}
	}
	// Requests repeating a transaction ID of the same batch get the event of the first.
	for i := range results {
		if j, ok := results[i].err.(errSameTxn); ok {
			results[i] = results[int(j)]
		}
	}
	return results
}

// unchangedState returns the current state event that req would repeat (same type, state
// key, sender and content), or nil. Such a request creates no event and gets the existing
// one, so that a client repeating a join or a state change it already made (a retry, a
// second click) adds nothing to the room, as Synapse does; the auth rules are not consulted
// again, since nothing changes.
func (s *Server) unchangedState(ctx context.Context, r *room, req eventRequest) (*storage.Event, error) {
	if req.StateKey == nil || req.Type == spec.MRoomCreate {
		return nil, nil
	}
	evs, err := s.stateEvents(ctx, r.version, r.state, []storage.StateKey{{Type: req.Type, StateKey: *req.StateKey}})
	if err != nil || len(evs) == 0 || string(evs[0].SenderID()) != req.Sender {
		return nil, err
	}
	content := req.Content
	if len(content) == 0 {
		content = json.RawMessage("{}")
	}
	want, err := gomatrixserverlib.CanonicalJSON(content)
	if err != nil {
		return nil, nil // not valid JSON: build reports it
	}
	have, err := gomatrixserverlib.CanonicalJSON(evs[0].Content())
	if err != nil || !bytes.Equal(want, have) {
		return nil, nil
	}
	return s.db.Event(ctx, evs[0].EventID())
}

// maxEventDepth is the largest depth gomatrixserverlib accepts (canonical JSON's safe
// integer range); a room's events never go deeper.
const maxEventDepth = 1<<53 - 1

// maxPrevEvents bounds the prev_events of a local event; extremities beyond it stay
// extremities, for the next events to merge.
const maxPrevEvents = 10

// citedExtremities splits the room's forward extremities into those a new event cites (all
// of them, or the maxPrevEvents newest) and those that stay extremities.
func citedExtremities(exts []extremity) (cited, kept []extremity) {
	if len(exts) <= maxPrevEvents {
		return exts, nil
	}
	sorted := append([]extremity(nil), exts...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].nid > sorted[j].nid })
	return sorted[:maxPrevEvents], sorted[maxPrevEvents:]
}

// inviteTarget returns the invitee when pdu is an invite.
func inviteTarget(pdu gomatrixserverlib.PDU) (string, bool) {
	if pdu.Type() != spec.MRoomMember || pdu.StateKey() == nil {
		return "", false
	}
	if m, err := pdu.Membership(); err != nil || m != spec.Invite {
		return "", false
	}
	return *pdu.StateKey(), true
}

// isRemoteInvite reports whether pdu invites a user of another server, whose server must
// sign it first.
func isRemoteInvite(pdu gomatrixserverlib.PDU, self spec.ServerName) bool {
	target, ok := inviteTarget(pdu)
	return ok && spec.ServerName(serverOf(target)) != self
}

// errSameTxn marks a request that repeats the transaction ID of request j of its batch.
type errSameTxn int

func (e errSameTxn) Error() string { return "repeated transaction ID" }

// build creates, signs and authorises an event with the given prev_events and depth against
// the room's current state.
func (s *Server) build(ctx context.Context, r *room, req eventRequest, prev []string, depth int64) (gomatrixserverlib.PDU, error) {
	if len(req.Content) == 0 {
		req.Content = json.RawMessage("{}")
	}
	if err := checkCanonicalNumbers(req.Content); err != nil {
		return nil, err
	}
	if req.Type == spec.MRoomMember && req.StateKey != nil {
		var err error
		if req.Content, err = s.memberContentFor(ctx, r, req.Sender, *req.StateKey, req.Content); err != nil {
			return nil, err
		}
	}
	proto := gomatrixserverlib.ProtoEvent{
		SenderID:   req.Sender,
		RoomID:     r.id,
		Type:       req.Type,
		StateKey:   req.StateKey,
		Content:    spec.RawJSON(req.Content),
		Redacts:    req.Redacts,
		Depth:      depth,
		PrevEvents: prev,
	}
	builder, authEvents, err := s.builderAt(ctx, r, &proto, r.state)
	if err != nil {
		return nil, err
	}
	ts := s.now()
	if req.TS != 0 {
		ts = time.UnixMilli(req.TS)
	}
	pdu, err := builder.Build(ts, s.cfg.ServerName, s.cfg.KeyID, s.cfg.PrivateKey)
	if err != nil {
		return nil, buildError(err)
	}
	if req.StickyMS != nil {
		if pdu, err = s.withSticky(r.version, pdu, *req.StickyMS); err != nil {
			return nil, err
		}
	}
	if len(pdu.JSON()) > maxEventBytes {
		return nil, spec.MatrixError{ErrCode: "M_TOO_LARGE", Err: "event is larger than 65536 bytes"}
	}
	if err := ownedstate.Allowed(pdu, authEvents, userIDForSender); err != nil {
		var badKey *ownedstate.BadStateKey
		if errors.As(err, &badKey) {
			return nil, spec.BadJSON(err.Error())
		}
		return nil, spec.Forbidden(err.Error())
	}
	return pdu, nil
}

// builderAt returns a builder of proto with the auth events the auth rules select for it
// from state, and those auth events.
func (s *Server) builderAt(ctx context.Context, r *room, proto *gomatrixserverlib.ProtoEvent, state map[int64]int64) (*gomatrixserverlib.EventBuilder, *gomatrixserverlib.AuthEvents, error) {
	needed, err := gomatrixserverlib.StateNeededForProtoEvent(proto)
	if err != nil {
		return nil, nil, spec.BadJSON(err.Error())
	}
	var keys []storage.StateKey
	for _, t := range needed.Tuples() {
		keys = append(keys, storage.StateKey{Type: t.EventType, StateKey: t.StateKey})
	}
	authPDUs, err := s.stateEvents(ctx, r.version, state, keys)
	if err != nil {
		return nil, nil, err
	}
	authEvents, err := gomatrixserverlib.NewAuthEvents(authPDUs)
	if err != nil {
		return nil, nil, err
	}
	builder := r.version.NewEventBuilderFromProtoEvent(proto)
	if err := builder.AddAuthEvents(authEvents); err != nil {
		return nil, nil, err
	}
	return builder, authEvents, nil
}

// buildError maps an event-building failure caused by the client's content to M_BAD_JSON:
// a failed validation, or content that is not canonical JSON (an integer outside
// [-(2^53)+1, (2^53)-1], which the spec's "Canonical JSON" forbids; gomatrixserverlib
// reports it as a BadJSONError).
func buildError(err error) error {
	var eve gomatrixserverlib.EventValidationError
	if errors.As(err, &eve) {
		if strings.Contains(eve.Message, "too long") || strings.Contains(eve.Message, "too large") || strings.Contains(eve.Message, "exceeds") {
			return spec.MatrixError{ErrCode: "M_TOO_LARGE", Err: eve.Message}
		}
		return spec.BadJSON(eve.Message)
	}
	var bje gomatrixserverlib.BadJSONError
	if errors.As(err, &bje) {
		return spec.BadJSON(bje.Error())
	}
	return fmt.Errorf("build event: %w", err)
}

// head is the part of a room's in-memory view that committing events changes.
type head struct {
	state map[int64]int64
	// ownState: state is this batch's own copy, not yet shared with the room or the cache,
	// which the batch's later state events change in place: a batch of joins to a room of
	// 50,000 members copies its state once, not once a join.
	ownState bool
	snapshot int64
	chainLen int
	pushes   []storage.PushAction     // the batch's notifications, stored together at its end
	shared   []storage.SharedPush     // the batch's shared notifications
	spans    []storage.SpanChange     // the batch's push span changes, in order
	covered  map[string]bool          // the users with an open push span after the batch; nil: unchanged
	outbound map[spec.ServerName]bool // remote servers the batch's events were queued for
}

// persist commits authorised events of room r (locked by the caller) in one transaction, then
// updates the in-memory head of the room and the caches, and tells the listener once.
func (s *Server) persist(ctx context.Context, r *room, batch []*pending) ([]*storage.Event, error) {
	_, kept := citedExtremities(r.extremities) // those the batch's first event does not cite
	var evs []*storage.Event
	var h head
	var newKeys map[storage.StateKey]int64
	var memberships map[string]string
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		evs, h, newKeys, memberships = nil, head{state: r.state, snapshot: r.snapshot, chainLen: r.chainLen}, map[storage.StateKey]int64{}, map[string]string{}
		if err := tx.LockEventStream(ctx); err != nil {
			return err
		}
		for _, p := range batch {
			ev, err := s.persistOne(ctx, tx, r, p, &h, newKeys, memberships)
			if err != nil {
				return err
			}
			evs = append(evs, ev)
		}
		last := evs[len(evs)-1]
		exts := []int64{last.NID}
		for _, e := range kept {
			exts = append(exts, e.nid)
		}
		if err := tx.SetForwardExtremities(ctx, r.nid, exts); err != nil {
			return err
		}
		if err := storePushes(ctx, tx, &h); err != nil {
			return err
		}
		return tx.SetRoomState(ctx, r.nid, h.snapshot, last.Depth)
	})
	if err != nil {
		return nil, err
	}
	// Committed: bring the in-memory head and caches in step.
	for k, nid := range newKeys {
		s.keys.remember(k, nid)
	}
	if h.snapshot != r.snapshot {
		s.snapshots.put(h.snapshot, &snapshotEntry{state: h.state, chainLen: h.chainLen})
	}
	for j, p := range batch {
		if p.target != nil {
			s.pdus.forget(p.target.NID)
		}
		s.pdus.put(evs[j].NID, p.pdu)
	}
	last := evs[len(evs)-1]
	r.state, r.snapshot, r.chainLen = h.state, h.snapshot, h.chainLen
	r.extremities = append([]extremity{{nid: last.NID, id: last.EventID}}, kept...)
	r.maxDepth = last.Depth
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
		r.members[u] = m
		r.pushMembers = nil
		if s.isLocal(u) {
			notify = append(notify, u)
		}
	}
	if s.listener != nil {
		s.listener.EventsCommitted(last.NID, notify)
	}
	for d := range h.outbound {
		s.cfg.Outbound.Wake(d)
	}
	return evs, nil
}

// queueOutbound queues ev, in the commit transaction, for every other server with a member
// joined to the room (after the event) and for the server of a membership event's target, so
// that a kicked or banned remote user's server hears of it; except is left out (the server an
// event came from).
func (s *Server) queueOutbound(ctx context.Context, tx *storage.Tx, r *room, ev *storage.Event, key storage.StateKey, memberships map[string]string, h *head, except spec.ServerName) error {
	if s.cfg.Outbound == nil {
		return nil
	}
	dests := map[spec.ServerName]bool{}
	add := func(userID string) {
		if i := strings.IndexByte(userID, ':'); i >= 0 {
			if srv := spec.ServerName(userID[i+1:]); srv != s.cfg.ServerName && srv != except {
				dests[srv] = true
			}
		}
	}
	for u, m := range r.members {
		if changed, ok := memberships[u]; ok {
			m = changed
		}
		if m == spec.Join {
			add(u)
		}
	}
	for u, m := range memberships {
		if _, known := r.members[u]; !known && m == spec.Join {
			add(u)
		}
	}
	if ev.Type == spec.MRoomMember {
		add(key.StateKey)
	}
	if r.partial != nil {
		// Partial state: the members this server knows are few; every server that had
		// joined members at the join may be in the room (MSC3902).
		for _, srv := range r.partial.ServersInRoom {
			add("@:" + srv)
		}
	}
	if len(dests) == 0 {
		return nil
	}
	list := make([]string, 0, len(dests))
	for d := range dests {
		list = append(list, string(d))
		if h.outbound == nil {
			h.outbound = map[spec.ServerName]bool{}
		}
		h.outbound[d] = true
	}
	return tx.QueuePDU(ctx, ev.NID, list)
}

// persistOne writes one event inside the batch transaction, advancing the working head h.
func (s *Server) persistOne(ctx context.Context, tx *storage.Tx, r *room, p *pending, h *head, newKeys map[storage.StateKey]int64, memberships map[string]string) (*storage.Event, error) {
	pdu := p.pdu
	ev := &storage.Event{
		EventID:        pdu.EventID(),
		RoomNID:        r.nid,
		Type:           pdu.Type(),
		Sender:         string(pdu.SenderID()),
		Depth:          pdu.Depth(),
		OriginTS:       int64(pdu.OriginServerTS()),
		StateBeforeNID: h.snapshot,
		TxnDevice:      p.req.TxnDevice,
		TxnID:          p.req.TxnID,
		JSON:           pdu.JSON(),
		RoomStateNID:   h.snapshot, // a state event changes it below
		StickyUntil:    stickyUntil(pdu, s.now()),
	}
	var key storage.StateKey
	if sk := pdu.StateKey(); sk != nil {
		key = storage.StateKey{Type: pdu.Type(), StateKey: *sk}
		nid, err := s.stateKeyNID(ctx, tx, key)
		if err != nil {
			return nil, err
		}
		newKeys[key] = nid
		ev.StateKeyNID = nid
		ev.ReplacesNID = h.state[nid]
	}
	if _, err := tx.InsertEvent(ctx, ev); err != nil {
		if errors.Is(err, storage.ErrConflict) {
			return nil, fmt.Errorf("event %s already stored", ev.EventID)
		}
		return nil, err
	}
	if ev.IsState() {
		state := h.state
		if !h.ownState {
			state, h.ownState = copyState(h.state), true
		}
		state[ev.StateKeyNID] = ev.NID
		snap := storage.Snapshot{Parent: h.snapshot, ChainLen: h.chainLen + 1, Entries: map[int64]int64{ev.StateKeyNID: ev.NID}}
		if h.snapshot == 0 || snap.ChainLen > maxChainLen {
			snap = storage.Snapshot{ChainLen: 1, Entries: state}
		}
		nid, err := tx.InsertSnapshot(ctx, r.nid, snap)
		if err != nil {
			return nil, err
		}
		h.state, h.snapshot, h.chainLen = state, nid, snap.ChainLen
		if err := tx.SetCurrentState(ctx, r.nid, map[int64]int64{ev.StateKeyNID: ev.NID}); err != nil {
			return nil, err
		}
		// Another user's delayed events for this state are cancelled (MSC4140, delayed.go).
		if err := tx.CancelDelayedStateBy(ctx, r.id, key.Type, key.StateKey, ev.Sender, ev.OriginTS); err != nil {
			return nil, err
		}
		ev.RoomStateNID = nid
		if err := tx.SetRoomStateNID(ctx, ev.NID, nid); err != nil {
			return nil, err
		}
		if ev.Type == spec.MRoomMember {
			membership, _ := pdu.Membership()
			memberships[key.StateKey] = membership
			if err := tx.SetMembership(ctx, r.nid, key.StateKey, membership, ev.NID); err != nil {
				return nil, err
			}
		}
	}
	if err := storeRelation(ctx, tx, ev, pdu); err != nil {
		return nil, err
	}
	if err := s.queueOutbound(ctx, tx, r, ev, key, memberships, h, ""); err != nil {
		return nil, err
	}
	if err := s.pushActions(ctx, tx, r, ev, pdu, memberships, h); err != nil {
		return nil, err
	}
	if key, text := storage.SearchText(ev.Type, pdu.Content()); text != "" {
		if err := tx.IndexEvent(ctx, ev.NID, r.nid, key, text); err != nil {
			return nil, err
		}
	}
	if p.req.TxnID != "" {
		if err := tx.InsertTxn(ctx, p.req.Sender, p.req.TxnDevice, r.nid, p.req.TxnID, ev.EventID, ev.OriginTS); err != nil {
			return nil, err
		}
	}
	if p.target != nil {
		if err := redactStored(ctx, tx, r, p.target, ev.EventID); err != nil {
			return nil, err
		}
	}
	return ev, nil
}

// redactStored replaces the stored target by its redacted form, in tx. A redacted event
// loses its content, and so its relation and its place in search.
func redactStored(ctx context.Context, tx *storage.Tx, r *room, target *storage.Event, redactionID string) error {
	redacted, err := r.version.RedactEventJSON(target.JSON)
	if err != nil {
		return fmt.Errorf("redact %s: %w", target.EventID, err)
	}
	if err := tx.RedactEvent(ctx, target.EventID, redactionID, redacted); err != nil {
		return err
	}
	if err := tx.DeleteRelation(ctx, target.EventID); err != nil {
		return err
	}
	return tx.UnindexEvent(ctx, target.NID)
}

// redactionTarget returns the event a redaction removes when the redaction may apply to it now:
// it is in the same room and the redacter sent it or has the redact power level. It returns
// nil (the redaction is stored but applies to nothing here) when the target is unknown or
// of another room and the redacter has the redact power level, M_FORBIDDEN otherwise.
func (s *Server) redactionTarget(ctx context.Context, r *room, pdu gomatrixserverlib.PDU) (*storage.Event, error) {
	targetID := redactsOf(pdu)
	target, err := s.db.Event(ctx, targetID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && target.RoomNID != r.nid) {
		// Not received (yet), or not of this room (answered alike, so as not to tell
		// events of other rooms apart): the redaction is sent without a target here, for
		// the servers that have the event. Whose event it is cannot be told, so only the
		// redact power level allows it.
		target = nil
	} else if err != nil {
		return nil, err
	}
	if target != nil && target.Sender == string(pdu.SenderID()) {
		return target, nil
	}
	pl, err := s.powerLevels(ctx, r)
	if err != nil {
		return nil, err
	}
	if s.userLevel(r, pl, string(pdu.SenderID())) >= pl.Redact {
		return target, nil
	}
	return nil, spec.Forbidden("you may not redact other users' events")
}

// redactsOf returns the event ID a redaction targets, wherever the room version puts it.
func redactsOf(pdu gomatrixserverlib.PDU) string {
	if id := pdu.Redacts(); id != "" {
		return id
	}
	return gjson.GetBytes(pdu.Content(), "redacts").Str
}

func (s *Server) isLocal(userID string) bool {
	return spec.ServerName(serverOf(userID)) == s.cfg.ServerName
}
