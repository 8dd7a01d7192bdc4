package appservice

import (
	"context"
	"sort"
	"time"

	"github.com/lattice-chat/lattice/storage"
)

// Waker is told that a stream reached a position (the sync notifier).
type Waker interface {
	Wake(stream storage.Stream, pos int64, users []string)
}

// TypingState is the typing state shared with /sync.
type TypingState interface {
	Pos() int64
	ChangedRooms(since int64) (map[string][]string, int64)
}

// SetTyping gives the component the typing state, for services receiving ephemeral data.
func (s *Server) SetTyping(t TypingState) { s.typing = t }

// Waker returns next wrapped so that typing and receipt changes also wake the senders of
// services receiving ephemeral data, and to-device messages and device list changes those of
// services receiving them (always wrapped: Reload may add such services).
func (s *Server) Waker(next Waker) Waker {
	return teeWaker{next: next, s: s}
}

type teeWaker struct {
	next Waker
	s    *Server
}

func (w teeWaker) Wake(stream storage.Stream, pos int64, users []string) {
	w.next.Wake(stream, pos, users)
	switch stream {
	case storage.StreamTyping, storage.StreamReceipts, storage.StreamPresence:
		for _, snd := range w.s.senderList() {
			if snd.svc.Ephemeral() {
				snd.ephDirty.Store(true)
				snd.wakeUp()
			}
		}
	case storage.StreamToDevice, storage.StreamDeviceLists:
		for _, snd := range w.s.senderList() {
			if snd.svc.wantsToDevice() {
				snd.e2eeDirty.Store(true)
				snd.wakeUp()
			}
		}
	}
}

// maxEphemeral bounds the receipts of one transaction.
const maxEphemeral = 100

// ephemeral returns the typing and receipt changes since the sender's positions in the
// rooms the service is interested in (Application Service API, "Pushing ephemeral data"),
// as /sync shows them plus room_id, and the positions they reach. Private receipts go only
// to the services of their users; presence, of the users of its namespaces and of those
// who share a room with them.
func (snd *sender) ephemeral(ctx context.Context, wanted map[string]bool) ([]map[string]any, int64, int64, error) {
	var out []map[string]any
	typingPos, receiptsPos := snd.typingPos, snd.receiptsPos
	pres, err := snd.presence(ctx, wanted)
	if err != nil {
		return nil, 0, 0, err
	}
	out = append(out, pres...)
	if t := snd.s.typing; t != nil {
		rooms, pos := t.ChangedRooms(snd.typingPos)
		ids := make([]string, 0, len(rooms))
		for id := range rooms {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, roomID := range ids {
			ok, err := snd.roomWanted(ctx, wanted, 0, roomID)
			if err != nil {
				return nil, 0, 0, err
			}
			if ok {
				users := rooms[roomID]
				sort.Strings(users)
				out = append(out, map[string]any{"type": "m.typing", "room_id": roomID, "content": map[string]any{"user_ids": users}})
			}
		}
		typingPos = pos
	}
	rs, roomIDs, err := snd.s.db.AllReceiptsSince(ctx, snd.receiptsPos, maxEphemeral)
	if err != nil {
		return nil, 0, 0, err
	}
	if len(rs) == maxEphemeral {
		snd.ephDirty.Store(true) // more next time
	}
	for i, r := range rs {
		receiptsPos = r.StreamPos
		if r.Type == storage.ReceiptPrivate && !snd.ownsLocal(r.UserID) {
			continue
		}
		ok, err := snd.roomWanted(ctx, wanted, r.RoomNID, roomIDs[i])
		if err != nil {
			return nil, 0, 0, err
		}
		if !ok {
			continue
		}
		receipt := map[string]any{"ts": r.TS}
		if r.ThreadID != "" {
			receipt["thread_id"] = r.ThreadID
		}
		out = append(out, map[string]any{"type": "m.receipt", "room_id": roomIDs[i], "content": map[string]any{
			r.EventID: map[string]any{r.Type: map[string]any{r.UserID: receipt}},
		}})
	}
	return out, typingPos, receiptsPos, nil
}

// presence returns the presence changes after the sender's position that the service is
// interested in, as m.presence events, and moves the position (kept with the others by the
// caller only on success: presence changes are read again after an error).
func (snd *sender) presence(ctx context.Context, wanted map[string]bool) ([]map[string]any, error) {
	ps, err := snd.s.db.AllPresenceSince(ctx, snd.presencePos, maxEphemeral)
	if err != nil || len(ps) == 0 {
		return nil, err
	}
	if len(ps) == maxEphemeral {
		snd.ephDirty.Store(true)
	}
	var out []map[string]any
	for _, p := range ps {
		ok := snd.ownsLocal(p.UserID)
		if !ok {
			ms, err := snd.s.db.UserMemberships(ctx, p.UserID, "join")
			if err != nil {
				return nil, err
			}
			for _, m := range ms {
				if ok, err = snd.roomWanted(ctx, wanted, m.RoomNID, m.RoomID); err != nil {
					return nil, err
				} else if ok {
					break
				}
			}
		}
		if !ok {
			continue
		}
		content := map[string]any{"presence": p.State}
		if p.StatusMsg != "" {
			content["status_msg"] = p.StatusMsg
		}
		if p.LastActiveTS > 0 {
			content["last_active_ago"] = max(time.Now().UnixMilli()-p.LastActiveTS, 0)
		}
		out = append(out, map[string]any{"type": "m.presence", "sender": p.UserID, "content": content})
	}
	snd.nextPresencePos = ps[len(ps)-1].StreamPos
	return out, nil
}
