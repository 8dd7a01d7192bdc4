package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// The receipt types of POST /receipt, and the thread ID of the main timeline.
const (
	receiptRead        = "m.read"
	receiptReadPrivate = storage.ReceiptPrivate
	receiptFullyRead   = "m.fully_read"
	threadMain         = "main"
)

// receiptRoutes lists the receipt and read marker endpoints.
func (s *Server) receiptRoutes() []route {
	const post = http.MethodPost
	return []route{
		{post, "/rooms/{roomId}/receipt/{receiptType}/{eventId}", true, false, s.handleReceipt},
		{post, "/rooms/{roomId}/read_markers", true, false, s.handleReadMarkers},
	}
}

// readMark is one marker to move: a receipt type (or m.fully_read) at an event, in a thread
// ("" for an unthreaded receipt).
type readMark struct {
	kind     string
	eventID  string
	threadID string
}

// handleReceipt handles POST /rooms/{roomId}/receipt/{receiptType}/{eventId}. An
// m.fully_read "receipt" moves the read marker, as /read_markers does.
func (s *Server) handleReceipt(r *http.Request) (any, error) {
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	mark := readMark{kind: httputil.PathVar(r, "receiptType"), eventID: httputil.PathVar(r, "eventId")}
	switch mark.kind {
	case receiptRead, receiptReadPrivate, receiptFullyRead:
	default:
		return nil, spec.InvalidParam("receipt type must be m.read, m.read.private or m.fully_read")
	}
	if mark.threadID, err = receiptThread(r, mark.kind); err != nil {
		return nil, err
	}
	return struct{}{}, s.markRead(r.Context(), httputil.Device(r.Context()).UserID, roomID, []readMark{mark})
}

// receiptThread reads the optional thread_id of a receipt's body (the spec requires a body,
// but an empty one is taken as {}). It must be a non-empty string, "main" or an event ID,
// and not given with m.fully_read.
func receiptThread(r *http.Request, kind string) (string, error) {
	body, err := httputil.ReadBody(r)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(string(body)) == "" {
		return "", nil
	}
	var fields map[string]json.RawMessage
	if err := httputil.UnmarshalObject(body, &fields); err != nil {
		return "", err
	}
	raw, ok := fields["thread_id"]
	if !ok {
		return "", nil
	}
	var threadID string
	if err := json.Unmarshal(raw, &threadID); err != nil || threadID == "" {
		return "", spec.InvalidParam("thread_id field must be a non-empty string")
	}
	if threadID != threadMain && !strings.HasPrefix(threadID, "$") {
		return "", spec.InvalidParam(`thread_id must be "main" or the event ID of a thread root`)
	}
	if kind == receiptFullyRead {
		return "", spec.InvalidParam("thread_id cannot be given for m.fully_read")
	}
	return threadID, nil
}

// handleReadMarkers handles POST /rooms/{roomId}/read_markers: the fully read marker and,
// optionally, the public and private read receipts, in one commit.
func (s *Server) handleReadMarkers(r *http.Request) (any, error) {
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	var body map[string]any
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	var marks []readMark
	for _, kind := range []string{receiptFullyRead, receiptRead, receiptReadPrivate} {
		v, ok := body[kind]
		if !ok || v == nil {
			continue
		}
		eventID, _ := v.(string)
		if !strings.HasPrefix(eventID, "$") {
			return nil, spec.InvalidParam(kind + " must be an event ID")
		}
		marks = append(marks, readMark{kind: kind, eventID: eventID})
	}
	return struct{}{}, s.markRead(r.Context(), httputil.Device(r.Context()).UserID, roomID, marks)
}

// markRead moves userID's markers in roomID:
//  1. the user must be joined to the room (else M_FORBIDDEN);
//  2. each event must be in the room (else M_NOT_FOUND);
//  3. the markers are stored in one transaction: m.fully_read as room account data, receipts
//     as the latest of their user, room, type and thread;
//  4. the account data stream wakes the user, the receipts stream the room's members (the
//     user alone for m.read.private);
//  5. the user was active, for presence.
func (s *Server) markRead(ctx context.Context, userID, roomID string, marks []readMark) error {
	if err := s.requireJoined(ctx, roomID, userID); err != nil {
		return err
	}
	room, err := s.db.Room(ctx, roomID)
	if err != nil {
		return err
	}
	events := make([]*storage.Event, len(marks))
	for i, m := range marks {
		ev, err := s.db.Event(ctx, m.eventID)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && (ev.RoomNID != room.NID || !ev.Visible())) {
			return spec.NotFound("event " + m.eventID + " not found in this room")
		} else if err != nil {
			return err
		}
		events[i] = ev
	}
	now := s.rooms.Now().UnixMilli()
	var dataPos, publicPos, privatePos int64
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		for i, m := range marks {
			if m.kind == receiptFullyRead {
				content, _ := json.Marshal(map[string]string{"event_id": m.eventID})
				pos, err := tx.SetAccountData(ctx, userID, roomID, receiptFullyRead, string(content))
				if err != nil {
					return err
				}
				dataPos = pos
				continue
			}
			pos, err := tx.SetReceipt(ctx, storage.Receipt{
				RoomNID: room.NID, UserID: userID, Type: m.kind, ThreadID: m.threadID,
				EventID: m.eventID, EventNID: events[i].NID, TS: now,
			})
			if err != nil {
				return err
			}
			if m.kind == receiptReadPrivate {
				privatePos = max(privatePos, pos)
			} else {
				publicPos = max(publicPos, pos)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.wakeMarks(ctx, userID, roomID, dataPos, publicPos, privatePos)
	if publicPos > 0 {
		for _, m := range marks {
			if m.kind == receiptRead {
				s.eduSink().Receipt(ctx, roomID, userID, m.kind, m.eventID, m.threadID, now)
			}
		}
	}
	if s.presence != nil {
		if err := s.presence.Active(ctx, userID); err != nil {
			s.log.Error("presence: record activity", "user_id", userID, "err", err)
		}
	}
	return nil
}

// wakeMarks wakes the syncs that see the committed markers (a zero position changed nothing).
func (s *Server) wakeMarks(ctx context.Context, userID, roomID string, dataPos, publicPos, privatePos int64) {
	if s.waker == nil {
		return
	}
	if dataPos > 0 {
		s.waker.Wake(storage.StreamAccountData, dataPos, []string{userID})
	}
	if privatePos > publicPos {
		s.waker.Wake(storage.StreamReceipts, privatePos, []string{userID})
	}
	if publicPos > 0 {
		members, err := s.rooms.JoinedMembers(ctx, roomID)
		if err != nil {
			s.log.Error("receipts: list room members", "room_id", roomID, "err", err)
		}
		s.waker.Wake(storage.StreamReceipts, publicPos, append(members, userID))
	}
}

// requireJoined fails with M_FORBIDDEN unless userID is joined to roomID (an unknown room
// included, so that its existence does not leak).
func (s *Server) requireJoined(ctx context.Context, roomID, userID string) error {
	m, err := s.rooms.Membership(ctx, roomID, userID)
	var me spec.MatrixError
	if errors.As(err, &me) && me.ErrCode == spec.ErrorNotFound {
		return spec.Forbidden("you are not joined to this room")
	} else if err != nil {
		return err
	}
	if m != spec.Join {
		return spec.Forbidden("you are not joined to this room")
	}
	return nil
}
