package syncapi

import (
	"context"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// receiptContent is the content of an m.receipt event: event ID -> receipt type -> user ID
// -> {ts, thread_id}.
type receiptContent map[string]map[string]map[string]receiptInfo

type receiptInfo struct {
	TS       int64  `json:"ts"`
	ThreadID string `json:"thread_id,omitempty"`
}

// syncEphemeral fills the ephemeral events (receipts, typing) of the joined rooms: one
// m.receipt event per room with the receipts that changed after since (all of them in an
// initial sync; m.read.private only the user's own), and an m.typing event with the current
// typers of each room whose set changed (the rooms with typers in an initial sync). Receipts
// and typing of ignored users are left out.
func (s *Server) syncEphemeral(ctx context.Context, req syncRequest, since, to Token, resp *syncResponse, memberships []storage.Membership) error {
	receipts, err := s.receiptEvents(ctx, req, since, to)
	if err != nil {
		return err
	}
	for _, m := range memberships {
		if m.Membership != spec.Join || m.Forgotten || !allowsRoom(req.filter.Room.Rooms, req.filter.Room.NotRooms, m.RoomID) {
			continue
		}
		var evs []any
		if c, ok := receipts[m.RoomNID]; ok {
			evs = append(evs, map[string]any{"type": "m.receipt", "content": c})
		}
		if ev, ok := s.typingEvent(req, m.RoomID, since, to); ok {
			evs = append(evs, ev)
		}
		if len(evs) == 0 {
			continue
		}
		jr, err := s.roomEntry(ctx, req, resp, m, to)
		if err != nil {
			return err
		}
		jr.Ephemeral.Events = append(jr.Ephemeral.Events, evs...)
	}
	return nil
}

// receiptEvents returns the content of the m.receipt event of each joined room (by room NID)
// that has receipts in (since, to].
func (s *Server) receiptEvents(ctx context.Context, req syncRequest, since, to Token) (map[int64]receiptContent, error) {
	if since.Receipts >= to.Receipts {
		return nil, nil
	}
	rs, err := s.db.ReceiptsSince(ctx, req.viewer.UserID, since.Receipts, to.Receipts)
	if err != nil {
		return nil, err
	}
	out := map[int64]receiptContent{}
	for _, r := range rs {
		if req.viewer.Ignored[r.UserID] {
			continue
		}
		c := out[r.RoomNID]
		if c == nil {
			c = receiptContent{}
			out[r.RoomNID] = c
		}
		byType := c[r.EventID]
		if byType == nil {
			byType = map[string]map[string]receiptInfo{}
			c[r.EventID] = byType
		}
		byUser := byType[r.Type]
		if byUser == nil {
			byUser = map[string]receiptInfo{}
			byType[r.Type] = byUser
		}
		byUser[r.UserID] = receiptInfo{TS: r.TS, ThreadID: r.ThreadID}
	}
	return out, nil
}

// typingEvent returns the m.typing event of roomID when its typers changed in (since, to].
// An initial sync gets it only when someone is typing.
func (s *Server) typingEvent(req syncRequest, roomID string, since, to Token) (any, bool) {
	if s.typing == nil {
		return nil, false
	}
	users, changed := s.typing.Changed(roomID, since.Typing, to.Typing)
	if !changed {
		return nil, false
	}
	shown := make([]string, 0, len(users))
	for _, u := range users {
		if !req.viewer.Ignored[u] {
			shown = append(shown, u)
		}
	}
	if req.since == nil && len(shown) == 0 {
		return nil, false
	}
	return map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": shown}}, true
}
