package roomserver

import (
	"context"
	"errors"
	"fmt"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/roomserver/ownedstate"
	"github.com/lattice-chat/lattice/storage"
)

// The auth checks of a partial state resync (resync.go): the state fetched is checked
// against its auth events, and the events accepted while the state was partial are checked
// again against the completed state.

// checkStoredAuth checks a stored event against its auth events (all stored by now).
func (s *Server) checkStoredAuth(ctx context.Context, ver gomatrixserverlib.IRoomVersion, ev *storage.Event, create gomatrixserverlib.PDU) error {
	got, err := s.pdusByNID(ctx, ver, []int64{ev.NID})
	if err != nil {
		return err
	}
	pdu, ok := got[ev.NID]
	if !ok {
		return fmt.Errorf("event %s unreadable", ev.EventID)
	}
	if pdu.Type() == spec.MRoomCreate {
		return nil
	}
	var nids []int64
	for _, id := range pdu.AuthEventIDs() {
		a, err := s.db.Event(ctx, id)
		if err != nil {
			return fmt.Errorf("auth event %s: %w", id, err)
		}
		if a.Status == storage.StatusRejected {
			return fmt.Errorf("auth event %s was rejected", id)
		}
		nids = append(nids, a.NID)
	}
	auth, err := s.pdusByNID(ctx, ver, nids)
	if err != nil {
		return err
	}
	list := make([]gomatrixserverlib.PDU, 0, len(auth)+1)
	for _, a := range auth {
		list = append(list, a)
	}
	provider, err := gomatrixserverlib.NewAuthEvents(list)
	if err != nil {
		return err
	}
	if c, _ := provider.Create(); c == nil && create != nil {
		_ = provider.AddEvent(create)
	}
	return ownedstate.Allowed(pdu, provider, userIDForSender)
}

// recheckSinceJoin checks the events of other servers accepted into room r (locked, its
// state completed) since the partial state join joinEventID against the state before each,
// now complete (MSC3902): an event accepted only because the partial state lacked a
// membership (a banned user's message, say) is rejected now. It leaves the room's event
// stream (clients that already received it keep it), and a state event of the current
// state gives way to the state before it.
func (s *Server) recheckSinceJoin(ctx context.Context, r *room, joinEventID string) error {
	join, err := s.db.Event(ctx, joinEventID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	// The stored state before a later event still holds a state event rejected here: each
	// rejected state event stands for the value before it (0: none) when later events are
	// checked, so that a banned user's join rejected here does not let their next event in.
	rejected := map[int64]int64{}
	for after := join.NID; ; {
		evs, err := s.db.RoomEventsSince(ctx, r.nid, after, resyncFillChunk)
		if err != nil || len(evs) == 0 {
			return err
		}
		for _, ev := range evs {
			after = ev.NID
			if s.isLocal(ev.Sender) || ev.StateBeforeNID == 0 {
				continue
			}
			if err := s.recheckEvent(ctx, r, ev, rejected); err != nil {
				return err
			}
		}
	}
}

// withoutRejected returns state with each rejected state event replaced by the value it
// stands for (following rejected ones in turn), or state itself when none is in it.
func withoutRejected(state map[int64]int64, rejected map[int64]int64) map[int64]int64 {
	var out map[int64]int64
	for k, nid := range state {
		if _, ok := rejected[nid]; !ok {
			continue
		}
		if out == nil {
			out = copyState(state) // state is shared with the snapshot cache
		}
		for seen := 0; seen <= len(rejected); seen++ {
			prev, ok := rejected[nid]
			if !ok {
				break
			}
			nid = prev
		}
		if nid == 0 {
			delete(out, k)
		} else {
			out[k] = nid
		}
	}
	if out == nil {
		return state
	}
	return out
}

// recheckEvent is recheckSinceJoin for one event; rejected maps the state events rejected
// so far to the values they stand for, and gains ev when it is one.
func (s *Server) recheckEvent(ctx context.Context, r *room, ev *storage.Event, rejected map[int64]int64) error {
	pdus, err := s.pdusByNID(ctx, r.version, []int64{ev.NID})
	if err != nil {
		return err
	}
	pdu, ok := pdus[ev.NID]
	if !ok {
		return nil
	}
	before, _, err := s.stateAt(ctx, ev.StateBeforeNID)
	if err != nil {
		return err
	}
	before = withoutRejected(before, rejected)
	authErr := s.allowedByState(ctx, r, pdu, before)
	if authErr == nil {
		return nil
	}
	if ev.IsState() {
		rejected[ev.NID] = before[ev.StateKeyNID]
	}
	s.log.Info("an event accepted during a partial state resync is rejected by the full state", "room_id", r.id, "event_id", ev.EventID, "err", authErr)
	revert := ev.IsState() && r.state[ev.StateKeyNID] == ev.NID
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.SetEventStatus(ctx, ev.NID, storage.StatusRejected, ev.StateBeforeNID); err != nil {
			return err
		}
		if !revert {
			return nil
		}
		prev := before[ev.StateKeyNID]
		if err := tx.SetCurrentState(ctx, r.nid, map[int64]int64{ev.StateKeyNID: prev}); err != nil {
			return err
		}
		next := storage.Snapshot{Parent: r.snapshot, ChainLen: r.chainLen + 1, Entries: map[int64]int64{ev.StateKeyNID: prev}}
		if next.ChainLen > maxChainLen {
			whole := copyState(r.state)
			if prev == 0 {
				delete(whole, ev.StateKeyNID)
			} else {
				whole[ev.StateKeyNID] = prev
			}
			next = storage.Snapshot{ChainLen: 1, Entries: whole}
		}
		snap, err := tx.InsertSnapshot(ctx, r.nid, next)
		if err != nil {
			return err
		}
		if err := tx.SetRoomState(ctx, r.nid, snap, r.maxDepth); err != nil {
			return err
		}
		if ev.Type != spec.MRoomMember || prev == 0 {
			return nil
		}
		prevPDUs, err := s.pdusFrom(ctx, tx, r.version, []int64{prev})
		if err != nil {
			return err
		}
		if p, ok := prevPDUs[prev]; ok && p.StateKey() != nil {
			if m, err := p.Membership(); err == nil {
				return tx.SetMembership(ctx, r.nid, *p.StateKey(), m, prev)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.pdus.forget(ev.NID)
	if revert {
		r.loaded = false
		return s.loadRoom(ctx, r)
	}
	return nil
}
