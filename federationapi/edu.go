package federationapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/presence"
	"github.com/lattice-chat/lattice/storage"
)

// Waker tells /sync that a stream reached a position, waking the long-polls of users
// (syncapi's notifier).
type Waker interface {
	Wake(stream storage.Stream, pos int64, users []string)
}

// Typer keeps the typing notifications of rooms (internal/typing); it wakes the room's
// members itself.
type Typer interface {
	Set(roomID, userID string, typing bool, timeout time.Duration)
}

// ephemeral is what the EDU handling needs besides the database: the sync notifier and the
// typing state for inbound EDUs (set before the listener starts), and for outbound device
// list updates the last stream ID sent per local user (eduout.go).
type ephemeral struct {
	waker  Waker
	typing Typer

	mu         sync.Mutex       // guards lastStream; held while a device list EDU is queued
	lastStream map[string]int64 // local user ID -> stream_id of the last m.device_list_update
}

// SetNotifier gives the federation API the /sync notifier that received EDUs wake. Like
// SetRoomserver, it is called before the listener starts.
func (s *Server) SetNotifier(w Waker) { s.edus.waker = w }

// SetTyping gives the federation API the typing state that received m.typing EDUs go to.
func (s *Server) SetTyping(t Typer) { s.edus.typing = t }

// mSigningKeyUpdate is the EDU of a user's changed cross-signing keys (gomatrixserverlib has
// no constant for it).
const mSigningKeyUpdate = "m.signing_key_update"

// remoteTypingTimeout is how long a remote user stays typing without a new m.typing EDU:
// the EDU carries no timeout, and a server that loses the "stopped" EDU must not leave its
// user typing forever.
const remoteTypingTimeout = 60 * time.Second

// errBadEDU marks an EDU dropped for what the sending server put in it, as opposed to our
// own failure.
var errBadEDU = errors.New("bad EDU")

func badEDU(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadEDU, fmt.Sprintf(format, args...))
}

// handleEDUs processes the EDUs of a transaction from origin, after its PDUs. EDUs carry no
// result: each is applied or dropped on its own, never failing the transaction. Unknown
// types are ignored, as the spec expects of new EDU types.
func (s *Server) handleEDUs(ctx context.Context, origin spec.ServerName, edus []gomatrixserverlib.EDU) {
	for _, e := range edus {
		err := s.handleEDU(ctx, origin, e)
		if errors.Is(err, errBadEDU) {
			s.log.Warn("dropped EDU", "origin", origin, "edu_type", e.Type, "err", err)
		} else if err != nil {
			s.log.Error("handle EDU", "origin", origin, "edu_type", e.Type, "err", err)
		}
	}
}

// handleEDU applies one EDU; a panic in it is logged and contained.
func (s *Server) handleEDU(ctx context.Context, origin spec.ServerName, e gomatrixserverlib.EDU) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	var handle func(context.Context, spec.ServerName, []byte) error
	switch e.Type {
	case spec.MTyping:
		handle = s.typingEDU
	case spec.MReceipt:
		handle = s.receiptEDU
	case spec.MPresence:
		handle = s.presenceEDU
	case spec.MDeviceListUpdate:
		handle = s.deviceListEDU
	case mSigningKeyUpdate:
		handle = s.signingKeyEDU
	case spec.MDirectToDevice:
		handle = s.toDeviceEDU
	default:
		return nil
	}
	if s.rs == nil {
		return errors.New("no roomserver")
	}
	return handle(ctx, origin, e.Content)
}

// decodeEDU decodes the content of an EDU into v.
func decodeEDU(content []byte, v any) error {
	if err := json.Unmarshal(content, v); err != nil {
		return badEDU("content: %v", err)
	}
	return nil
}

// userOf checks that userID is a user of origin: a server speaks only for its own users.
func userOf(userID string, origin spec.ServerName) error {
	u, err := spec.NewUserID(userID, true)
	if err != nil {
		return badEDU("invalid user ID %q", userID)
	}
	if u.Domain() != origin {
		return badEDU("user %s is not of %s", userID, origin)
	}
	return nil
}

// joinedFrom checks, for an EDU about userID in roomID: the user belongs to origin, origin
// is allowed by the room's server ACL, and the user is joined to the room. Like the ACL, the
// membership is read from the database, not under the room's lock: the room's input may be
// waiting on the very server whose transaction this is.
func (s *Server) joinedFrom(ctx context.Context, origin spec.ServerName, roomID, userID string) error {
	if err := userOf(userID, origin); err != nil {
		return err
	}
	if !s.rs.ServerAllowed(ctx, roomID, origin) {
		return badEDU("%s is denied by the server ACL of %s", origin, roomID)
	}
	room, err := s.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return badEDU("unknown room %s", roomID)
	} else if err != nil {
		return err
	}
	m, err := s.db.Membership(ctx, room.NID, userID)
	if err != nil {
		return err
	}
	if m != spec.Join {
		return badEDU("%s is not joined to %s", userID, roomID)
	}
	return nil
}

// wake tells /sync about a change at pos (nothing when pos is 0 or there is no notifier).
func (s *Server) wake(stream storage.Stream, pos int64, users []string) {
	if pos > 0 && s.edus.waker != nil {
		s.edus.waker.Wake(stream, pos, users)
	}
}

// typingEDU applies m.typing: a user of origin, joined to the room, starts or stops typing.
func (s *Server) typingEDU(ctx context.Context, origin spec.ServerName, content []byte) error {
	var c struct {
		RoomID string `json:"room_id"`
		UserID string `json:"user_id"`
		Typing bool   `json:"typing"`
	}
	if err := decodeEDU(content, &c); err != nil {
		return err
	}
	if err := s.joinedFrom(ctx, origin, c.RoomID, c.UserID); err != nil {
		return err
	}
	if s.edus.typing != nil {
		s.edus.typing.Set(c.RoomID, c.UserID, c.Typing, remoteTypingTimeout)
	}
	return nil
}

// receiptEDU applies m.receipt: the m.read receipts of origin's users joined to each room,
// for events this server has in that room. A room whose ACL denies origin is skipped
// whole; other receipt types (m.read.private never leaves its server) are ignored.
func (s *Server) receiptEDU(ctx context.Context, origin spec.ServerName, content []byte) error {
	type userReceipt struct {
		EventIDs []string `json:"event_ids"`
		Data     struct {
			TS       int64  `json:"ts"`
			ThreadID string `json:"thread_id"`
		} `json:"data"`
	}
	var c map[string]map[string]map[string]userReceipt
	if err := decodeEDU(content, &c); err != nil {
		return err
	}
	var errs []error
	for roomID, byType := range c {
		var receipts []storage.Receipt
		for userID, r := range byType["m.read"] {
			if err := s.joinedFrom(ctx, origin, roomID, userID); err != nil {
				errs = append(errs, err)
				continue
			}
			for _, eventID := range r.EventIDs {
				ev, err := s.db.Event(ctx, eventID)
				if errors.Is(err, storage.ErrNotFound) {
					continue // not received (yet): nothing to mark
				} else if err != nil {
					return err
				}
				receipts = append(receipts, storage.Receipt{
					RoomNID: ev.RoomNID, UserID: userID, Type: "m.read", ThreadID: r.Data.ThreadID,
					EventID: eventID, EventNID: ev.NID, TS: r.Data.TS,
				})
			}
		}
		if err := s.storeReceipts(ctx, roomID, receipts); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// storeReceipts stores the receipts of roomID (those for events of other rooms or not
// visible are left out) and wakes the room's members.
func (s *Server) storeReceipts(ctx context.Context, roomID string, receipts []storage.Receipt) error {
	if len(receipts) == 0 {
		return nil
	}
	room, err := s.db.Room(ctx, roomID)
	if err != nil {
		return err
	}
	var pos int64
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		for _, r := range receipts {
			if r.RoomNID != room.NID {
				continue
			}
			p, err := tx.SetReceipt(ctx, r)
			if err != nil {
				return err
			}
			pos = max(pos, p)
		}
		return nil
	})
	if err != nil || pos == 0 {
		return err
	}
	joined, err := s.db.RoomMembers(ctx, room.NID, spec.Join)
	if err != nil {
		s.log.Error("receipts: list room members", "room_id", roomID, "err", err)
	}
	members := make([]string, len(joined))
	for i, m := range joined {
		members[i] = m.UserID
	}
	s.wake(storage.StreamReceipts, pos, members)
	return nil
}

// presenceEDU applies m.presence: the presence of origin's users, stored (and woken) only
// for users sharing a room with a local user, the only ones whose presence anyone here sees.
func (s *Server) presenceEDU(ctx context.Context, origin spec.ServerName, content []byte) error {
	var c struct {
		Push []struct {
			UserID        string `json:"user_id"`
			Presence      string `json:"presence"`
			StatusMsg     string `json:"status_msg"`
			LastActiveAgo int64  `json:"last_active_ago"`
		} `json:"push"`
	}
	if err := decodeEDU(content, &c); err != nil {
		return err
	}
	var errs []error
	now := s.cfg.Now().UnixMilli()
	for _, p := range c.Push {
		if err := userOf(p.UserID, origin); err != nil {
			errs = append(errs, err)
			continue
		}
		if !presence.Valid(p.Presence) {
			errs = append(errs, badEDU("invalid presence %q of %s", p.Presence, p.UserID))
			continue
		}
		peers, err := s.localPeers(ctx, p.UserID)
		if err != nil {
			return err
		}
		if len(peers) == 0 {
			continue
		}
		var lastActive int64
		if p.LastActiveAgo > 0 {
			lastActive = now - p.LastActiveAgo
		}
		var pos int64
		err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
			var err error
			pos, err = tx.SetPresence(ctx, storage.Presence{UserID: p.UserID, State: p.Presence, StatusMsg: p.StatusMsg, LastActiveTS: lastActive})
			return err
		})
		if err != nil {
			return err
		}
		s.wake(storage.StreamPresence, pos, peers)
	}
	return errors.Join(errs...)
}

// localPeers returns the local users joined to a room userID is joined to.
func (s *Server) localPeers(ctx context.Context, userID string) ([]string, error) {
	users, err := s.db.UsersSharingRooms(ctx, userID)
	if err != nil {
		return nil, err
	}
	local := users[:0]
	for _, u := range users {
		if s.isLocalUser(u) {
			local = append(local, u)
		}
	}
	return local, nil
}

// deviceListEDU applies m.device_list_update. This server keeps no copy of remote device
// lists (a local user's /keys/query asks the user's server), so an update only records
// that the user's devices changed: the local users sharing a room with them see the user in
// their /sync device_lists.changed and query the keys again. stream_id and prev_id matter
// to a cache only, and are not needed here.
func (s *Server) deviceListEDU(ctx context.Context, origin spec.ServerName, content []byte) error {
	var c gomatrixserverlib.DeviceListUpdateEvent
	if err := decodeEDU(content, &c); err != nil {
		return err
	}
	return s.remoteKeysChanged(ctx, origin, c.UserID)
}

// signingKeyEDU applies m.signing_key_update: a user's cross-signing keys changed, which
// clients learn as a device list change (the keys come with /keys/query).
func (s *Server) signingKeyEDU(ctx context.Context, origin spec.ServerName, content []byte) error {
	var c struct {
		UserID string `json:"user_id"`
	}
	if err := decodeEDU(content, &c); err != nil {
		return err
	}
	return s.remoteKeysChanged(ctx, origin, c.UserID)
}

// remoteKeysChanged records a device list change of userID, a user of origin, and wakes
// the local users sharing a room with them (nothing when there are none).
func (s *Server) remoteKeysChanged(ctx context.Context, origin spec.ServerName, userID string) error {
	if err := userOf(userID, origin); err != nil {
		return err
	}
	peers, err := s.localPeers(ctx, userID)
	if err != nil || len(peers) == 0 {
		return err
	}
	var pos int64
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		var err error
		pos, err = tx.DeviceListChanged(ctx, userID)
		return err
	})
	if err != nil {
		return err
	}
	s.wake(storage.StreamDeviceLists, pos, peers)
	return nil
}

// toDeviceEDU applies m.direct_to_device: the messages to local users' devices ("*": every
// device of the user) are queued at one to_device position. The sender's message_id is
// recorded in the same transaction, so a repeated EDU (a retried transaction) is not
// delivered twice. Messages to other servers' users and to unknown devices are dropped.
func (s *Server) toDeviceEDU(ctx context.Context, origin spec.ServerName, content []byte) error {
	var c struct {
		Sender    string                                `json:"sender"`
		Type      string                                `json:"type"`
		MessageID string                                `json:"message_id"`
		Messages  map[string]map[string]json.RawMessage `json:"messages"`
	}
	if err := decodeEDU(content, &c); err != nil {
		return err
	}
	if err := userOf(c.Sender, origin); err != nil {
		return err
	}
	if c.Type == "" {
		return badEDU("to-device message without a type")
	}
	var pos int64
	var users []string
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		if c.MessageID != "" {
			// A remote sender has no device here: its message IDs are kept under device "".
			err := tx.InsertToDeviceTxn(ctx, c.Sender, "", c.MessageID, s.cfg.Now().UnixMilli())
			if errors.Is(err, storage.ErrConflict) {
				return nil // delivered before
			} else if err != nil {
				return err
			}
		}
		var msgs []storage.ToDeviceMessage
		for userID, byDevice := range c.Messages {
			if !s.isLocalUser(userID) {
				continue
			}
			targets, err := toDeviceTargets(ctx, tx, userID, byDevice)
			if err != nil {
				return err
			}
			for deviceID, body := range targets {
				msgs = append(msgs, storage.ToDeviceMessage{UserID: userID, DeviceID: deviceID, Sender: c.Sender, Type: c.Type, Content: string(body)})
			}
			if len(targets) > 0 {
				users = append(users, userID)
			}
		}
		if len(msgs) == 0 {
			return nil
		}
		var err error
		pos, err = tx.InsertToDeviceMessages(ctx, msgs)
		return err
	})
	if err != nil {
		return err
	}
	s.wake(storage.StreamToDevice, pos, users)
	return nil
}

// toDeviceTargets maps the existing devices of a local user to their message: "*" names
// every device, and a device named explicitly gets its own message instead. Unknown devices
// and messages that are not JSON objects are skipped.
func toDeviceTargets(ctx context.Context, tx *storage.Tx, userID string, byDevice map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	devs, err := tx.Devices(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := map[string]json.RawMessage{}
	for _, d := range devs {
		body, ok := byDevice[d.DeviceID]
		if !ok {
			body, ok = byDevice["*"]
		}
		if ok && strings.HasPrefix(strings.TrimSpace(string(body)), "{") {
			out[d.DeviceID] = body
		}
	}
	return out, nil
}
