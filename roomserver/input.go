package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

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
}

// submit builds, signs, authorises and persists a local event in room r, whose lock the
// caller holds. A repeated (sender, device, txn ID) returns the event first sent with it.
//  1. prev_events are the forward extremities, depth one more than the deepest of them;
//  2. auth_events are selected from the current state (gomatrixserverlib.StateNeeded);
//  3. the event is hashed and signed with the server key;
//  4. it must pass the auth rules against its auth events (and so the current state);
//  5. the event, state after it, extremities and transaction ID commit in one transaction.
func (s *Server) submit(ctx context.Context, r *room, req eventRequest) (*storage.Event, error) {
	if req.TxnID != "" {
		if eventID, err := s.db.TxnEvent(ctx, req.Sender, req.TxnDevice, r.nid, req.TxnID); err == nil {
			return s.db.Event(ctx, eventID)
		} else if !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
	}
	if len(req.Content) == 0 {
		req.Content = json.RawMessage("{}")
	}
	prev := make([]string, 0, len(r.extremities))
	for _, e := range r.extremities {
		prev = append(prev, e.id)
	}
	proto := gomatrixserverlib.ProtoEvent{
		SenderID:   req.Sender,
		RoomID:     r.id,
		Type:       req.Type,
		StateKey:   req.StateKey,
		Content:    spec.RawJSON(req.Content),
		Redacts:    req.Redacts,
		Depth:      r.maxDepth + 1,
		PrevEvents: prev,
	}
	needed, err := gomatrixserverlib.StateNeededForProtoEvent(&proto)
	if err != nil {
		return nil, spec.BadJSON(err.Error())
	}
	var keys []storage.StateKey
	for _, t := range needed.Tuples() {
		keys = append(keys, storage.StateKey{Type: t.EventType, StateKey: t.StateKey})
	}
	authPDUs, err := s.stateEvents(ctx, r.version, r.state, keys)
	if err != nil {
		return nil, err
	}
	authEvents, err := gomatrixserverlib.NewAuthEvents(authPDUs)
	if err != nil {
		return nil, err
	}
	builder := r.version.NewEventBuilderFromProtoEvent(&proto)
	if err := builder.AddAuthEvents(authEvents); err != nil {
		return nil, err
	}
	pdu, err := builder.Build(s.now(), s.cfg.ServerName, s.cfg.KeyID, s.cfg.PrivateKey)
	if err != nil {
		return nil, buildError(err)
	}
	if len(pdu.JSON()) > maxEventBytes {
		return nil, spec.MatrixError{ErrCode: "M_TOO_LARGE", Err: "event is larger than 65536 bytes"}
	}
	if err := gomatrixserverlib.Allowed(pdu, authEvents, userIDForSender); err != nil {
		return nil, spec.Forbidden(err.Error())
	}
	return s.persist(ctx, r, pdu, req)
}

// buildError maps an event-building failure caused by the client's content to M_BAD_JSON.
func buildError(err error) error {
	var eve gomatrixserverlib.EventValidationError
	if errors.As(err, &eve) {
		if strings.Contains(eve.Message, "too long") || strings.Contains(eve.Message, "too large") || strings.Contains(eve.Message, "exceeds") {
			return spec.MatrixError{ErrCode: "M_TOO_LARGE", Err: eve.Message}
		}
		return spec.BadJSON(eve.Message)
	}
	return fmt.Errorf("build event: %w", err)
}

// persist commits an authorised event of room r (locked by the caller) and then updates the
// in-memory head of the room, the caches, and tells the listener.
func (s *Server) persist(ctx context.Context, r *room, pdu gomatrixserverlib.PDU, req eventRequest) (*storage.Event, error) {
	ev := &storage.Event{
		EventID:        pdu.EventID(),
		RoomNID:        r.nid,
		Type:           pdu.Type(),
		Sender:         string(pdu.SenderID()),
		Depth:          pdu.Depth(),
		OriginTS:       int64(pdu.OriginServerTS()),
		StateBeforeNID: r.snapshot,
		TxnDevice:      req.TxnDevice,
		TxnID:          req.TxnID,
		JSON:           pdu.JSON(),
	}
	newState := r.state
	newSnapshot, newChainLen := r.snapshot, r.chainLen
	var stateKey storage.StateKey
	var membership string
	var redactTarget *storage.Event
	if pdu.Type() == spec.MRoomRedaction {
		target, err := s.redactionTarget(ctx, r, pdu)
		if err != nil {
			return nil, err
		}
		redactTarget = target
	}
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		if sk := pdu.StateKey(); sk != nil {
			stateKey = storage.StateKey{Type: pdu.Type(), StateKey: *sk}
			nid, err := s.stateKeyNID(ctx, tx, stateKey)
			if err != nil {
				return err
			}
			ev.StateKeyNID = nid
			ev.ReplacesNID = r.state[nid]
		}
		if _, err := tx.InsertEvent(ctx, ev); err != nil {
			if errors.Is(err, storage.ErrConflict) {
				return fmt.Errorf("event %s already stored", ev.EventID)
			}
			return err
		}
		if ev.IsState() {
			newState = copyState(r.state)
			newState[ev.StateKeyNID] = ev.NID
			snap := storage.Snapshot{Parent: r.snapshot, ChainLen: r.chainLen + 1, Entries: map[int64]int64{ev.StateKeyNID: ev.NID}}
			if r.snapshot == 0 || snap.ChainLen > maxChainLen {
				snap = storage.Snapshot{ChainLen: 1, Entries: newState}
			}
			nid, err := tx.InsertSnapshot(ctx, r.nid, snap)
			if err != nil {
				return err
			}
			newSnapshot, newChainLen = nid, snap.ChainLen
			if err := tx.SetCurrentState(ctx, r.nid, map[int64]int64{ev.StateKeyNID: ev.NID}); err != nil {
				return err
			}
			if ev.Type == spec.MRoomMember {
				membership, _ = pdu.Membership()
				if err := tx.SetMembership(ctx, r.nid, stateKey.StateKey, membership, ev.NID); err != nil {
					return err
				}
			}
		}
		if err := tx.SetForwardExtremities(ctx, r.nid, []int64{ev.NID}); err != nil {
			return err
		}
		if err := tx.SetRoomState(ctx, r.nid, newSnapshot, ev.Depth); err != nil {
			return err
		}
		if req.TxnID != "" {
			if err := tx.InsertTxn(ctx, req.Sender, req.TxnDevice, r.nid, req.TxnID, ev.EventID, ev.OriginTS); err != nil {
				return err
			}
		}
		if redactTarget != nil {
			redacted, err := r.version.RedactEventJSON(redactTarget.JSON)
			if err != nil {
				return fmt.Errorf("redact %s: %w", redactTarget.EventID, err)
			}
			if err := tx.RedactEvent(ctx, redactTarget.EventID, ev.EventID, redacted); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Committed: bring the in-memory head and caches in step.
	if ev.IsState() {
		s.keys.remember(stateKey, ev.StateKeyNID)
		s.snapshots.put(&snapshotEntry{nid: newSnapshot, state: newState, chainLen: newChainLen})
	}
	if redactTarget != nil {
		s.pdus.forget(redactTarget.NID)
	}
	s.pdus.put(ev.NID, pdu)
	r.state, r.snapshot, r.chainLen = newState, newSnapshot, newChainLen
	r.extremities = []extremity{{nid: ev.NID, id: ev.EventID}}
	r.maxDepth = ev.Depth
	notify := make([]string, 0, len(r.members)+1)
	for u, m := range r.members {
		if (m == spec.Join || m == spec.Invite) && s.isLocal(u) {
			notify = append(notify, u)
		}
	}
	if membership != "" {
		r.members[stateKey.StateKey] = membership
		if s.isLocal(stateKey.StateKey) {
			notify = append(notify, stateKey.StateKey)
		}
	}
	if s.listener != nil {
		s.listener.EventsCommitted(ev.NID, notify)
	}
	return ev, nil
}

// redactionTarget returns the event a redaction removes when the redaction may apply to it now:
// it is in the same room and the redacter sent it or has the redact power level. It returns
// nil (the redaction is stored but applies to nothing) when the target is unknown.
func (s *Server) redactionTarget(ctx context.Context, r *room, pdu gomatrixserverlib.PDU) (*storage.Event, error) {
	targetID := redactsOf(pdu)
	target, err := s.db.Event(ctx, targetID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	if target.RoomNID != r.nid {
		return nil, nil
	}
	if target.Sender == string(pdu.SenderID()) {
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
	i := strings.IndexByte(userID, ':')
	return i >= 0 && spec.ServerName(userID[i+1:]) == s.cfg.ServerName
}
