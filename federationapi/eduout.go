package federationapi

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/presence"
	"github.com/lattice-chat/lattice/storage"
)

// EDUSender queues the EDUs that tell other servers about local users' ephemeral changes,
// in the federation outbox (federation_queue_edus), and wakes the sender for each
// destination. The client API calls it after committing a change (clientapi.EDUSink).
// Destinations, as the server-server API's EDU sections say:
//   - m.typing, m.receipt: the other servers with members joined to the room;
//   - m.presence, m.device_list_update, m.signing_key_update: the servers sharing a room
//     with the user;
//   - m.direct_to_device: the target users' servers.
//
// Typing, receipts and presence are ephemeral: a failure to queue them is logged, not
// returned, as the local change stands. To-device messages are queued inside the caller's
// transaction, with the local ones, so that an acknowledged send is never lost.
type EDUSender struct {
	s *Server
}

// EDUSender returns the queue of outbound EDUs.
func (s *Server) EDUSender() *EDUSender { return &EDUSender{s: s} }

// queue queues an EDU of eduType with content for each destination in one transaction, then
// wakes the sender for them.
func (e *EDUSender) queue(ctx context.Context, eduType string, content any, dests []string) error {
	if len(dests) == 0 {
		return nil
	}
	js, err := json.Marshal(content)
	if err != nil {
		return err
	}
	err = e.s.db.WithTx(ctx, func(tx *storage.Tx) error {
		for _, d := range dests {
			if err := tx.QueueEDU(ctx, d, eduType, js); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	e.wake(dests)
	return nil
}

func (e *EDUSender) wake(dests []string) {
	for _, d := range dests {
		e.s.sender.Wake(spec.ServerName(d))
	}
}

// roomServers returns the other servers with members joined to roomID.
func (e *EDUSender) roomServers(ctx context.Context, roomID string) ([]string, error) {
	return e.s.db.RemoteServersInRoom(ctx, roomID, string(e.s.cfg.ServerName))
}

// peerServers returns the other servers sharing a room with userID.
func (e *EDUSender) peerServers(ctx context.Context, userID string) ([]string, error) {
	return e.s.db.RemoteServersSharingRooms(ctx, userID, string(e.s.cfg.ServerName))
}

// logErr logs the failure to queue an ephemeral EDU (our own failure).
func (e *EDUSender) logErr(eduType, userID string, err error) {
	if err != nil {
		e.s.log.Error("queue EDU", "edu_type", eduType, "user_id", userID, "err", err)
	}
}

// Typing queues m.typing for userID starting or stopping to type in roomID.
func (e *EDUSender) Typing(ctx context.Context, roomID, userID string, typing bool) {
	dests, err := e.roomServers(ctx, roomID)
	if err == nil {
		err = e.queue(ctx, spec.MTyping, map[string]any{"room_id": roomID, "user_id": userID, "typing": typing}, dests)
	}
	e.logErr(spec.MTyping, userID, err)
}

// Receipt queues m.receipt for a receipt userID set in roomID. Only public read receipts
// (m.read) leave this server; private ones (m.read.private) and the read marker stay.
func (e *EDUSender) Receipt(ctx context.Context, roomID, userID, receiptType, eventID, threadID string, ts int64) {
	if receiptType != "m.read" {
		return
	}
	data := map[string]any{"ts": ts}
	if threadID != "" {
		data["thread_id"] = threadID
	}
	content := map[string]any{roomID: map[string]any{receiptType: map[string]any{
		userID: map[string]any{"event_ids": []string{eventID}, "data": data},
	}}}
	dests, err := e.roomServers(ctx, roomID)
	if err == nil {
		err = e.queue(ctx, spec.MReceipt, content, dests)
	}
	e.logErr(spec.MReceipt, userID, err)
}

// Presence queues m.presence with userID's stored presence.
func (e *EDUSender) Presence(ctx context.Context, userID string) {
	err := e.presence(ctx, userID)
	e.logErr(spec.MPresence, userID, err)
}

func (e *EDUSender) presence(ctx context.Context, userID string) error {
	dests, err := e.peerServers(ctx, userID)
	if err != nil || len(dests) == 0 {
		return err
	}
	p, err := e.s.db.Presence(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		p = &storage.Presence{UserID: userID, State: presence.Offline}
	} else if err != nil {
		return err
	}
	update := presence.Content(p, e.s.cfg.Now())
	update["user_id"] = userID
	if _, ok := update["currently_active"]; !ok {
		update["currently_active"] = false
	}
	if _, ok := update["last_active_ago"]; !ok {
		update["last_active_ago"] = 0 // required over federation
	}
	return e.queue(ctx, spec.MPresence, map[string]any{"push": []any{update}}, dests)
}

// DeviceListChanged queues m.device_list_update for each of userID's named devices: its
// current keys, or deleted when it no longer exists. With no device named (a change the
// caller cannot pin to devices, such as signatures), every current device is announced and
// the first update has no prev_id, so that a receiving server with a cache resynchronises
// the whole list.
//
// Each update gets a new position of the device_lists stream as its stream_id, so stream
// IDs are unique and increasing per user, and later than the stream_id of GET
// /user/devices. prev_id is the stream_id of the user's previous update, remembered in
// memory: after a restart (or from another process) the first update has none, which makes
// receivers resynchronise rather than miss a change.
func (e *EDUSender) DeviceListChanged(ctx context.Context, userID string, deviceIDs []string) {
	err := e.deviceListChanged(ctx, userID, deviceIDs)
	e.logErr(spec.MDeviceListUpdate, userID, err)
}

func (e *EDUSender) deviceListChanged(ctx context.Context, userID string, deviceIDs []string) error {
	dests, err := e.peerServers(ctx, userID)
	if err != nil || len(dests) == 0 {
		return err
	}
	return e.queueDeviceList(ctx, userID, deviceIDs, dests, true)
}

// DeviceListsTo queues for dest alone a full m.device_list_update of each of users (every
// current device, the first update without prev_id, which makes a receiver with a cache
// resynchronise): dest's user has just joined a room of theirs, and dest may never have
// tracked their devices. The updates do not enter the chain the other servers follow.
//
// The sender is not woken for them: they leave with the next transaction to dest. Sent at
// once they would race dest's processing of its own join, and a receiver drops updates
// about users it does not share a room with yet (Synapse does, and so does this server).
func (e *EDUSender) DeviceListsTo(ctx context.Context, dest string, users []string) {
	for _, u := range users {
		err := e.queueDeviceList(ctx, u, nil, []string{dest}, false)
		e.logErr(spec.MDeviceListUpdate, u, err)
	}
}

// queueDeviceList queues userID's updates for deviceIDs (all current devices when none) to
// dests; chained, they continue the prev_id chain of the updates to every server sharing a
// room with userID, and the sender is woken for dests.
func (e *EDUSender) queueDeviceList(ctx context.Context, userID string, deviceIDs, dests []string, chained bool) error {
	devs, err := e.s.db.Devices(ctx, userID)
	if err != nil {
		return err
	}
	exists := map[string]bool{}
	for _, d := range devs {
		exists[d.DeviceID] = true
	}
	resync := len(deviceIDs) == 0
	if resync {
		for _, d := range devs {
			deviceIDs = append(deviceIDs, d.DeviceID)
		}
	}
	slices.Sort(deviceIDs)
	deviceIDs = slices.Compact(deviceIDs)
	if len(deviceIDs) == 0 {
		return nil
	}
	keys, err := e.s.userKeys(ctx, userID, deviceIDs)
	if err != nil {
		return err
	}
	ed := &e.s.edus
	ed.mu.Lock() // one user's updates must chain in the order they are queued
	defer ed.mu.Unlock()
	var prev int64
	if chained && !resync {
		prev = ed.lastStream[userID]
	}
	err = e.s.db.WithTx(ctx, func(tx *storage.Tx) error {
		for _, id := range deviceIDs {
			streamID, err := tx.NextStreamPos(ctx, storage.StreamDeviceLists)
			if err != nil {
				return err
			}
			update := gomatrixserverlib.DeviceListUpdateEvent{
				UserID: userID, DeviceID: id, StreamID: streamID, Deleted: !exists[id], Keys: keys.devices[id],
			}
			if prev != 0 {
				update.PrevID = []int64{prev}
			}
			js, err := json.Marshal(update)
			if err != nil {
				return err
			}
			for _, d := range dests {
				if err := tx.QueueEDU(ctx, d, spec.MDeviceListUpdate, js); err != nil {
					return err
				}
			}
			prev = streamID
		}
		return nil
	})
	if err != nil {
		return err
	}
	if chained {
		if ed.lastStream == nil {
			ed.lastStream = map[string]int64{}
		}
		ed.lastStream[userID] = prev
		e.wake(dests)
	}
	return nil
}

// SigningKeysChanged queues m.signing_key_update with userID's current master and
// self-signing keys (the user-signing key is private to its owner).
func (e *EDUSender) SigningKeysChanged(ctx context.Context, userID string) {
	err := e.signingKeysChanged(ctx, userID)
	e.logErr(mSigningKeyUpdate, userID, err)
}

func (e *EDUSender) signingKeysChanged(ctx context.Context, userID string) error {
	dests, err := e.peerServers(ctx, userID)
	if err != nil || len(dests) == 0 {
		return err
	}
	keys, err := e.s.userKeys(ctx, userID, []string{})
	if err != nil {
		return err
	}
	content := map[string]any{"user_id": userID}
	if keys.master != nil {
		content["master_key"] = keys.master
	}
	if keys.selfSigning != nil {
		content["self_signing_key"] = keys.selfSigning
	}
	return e.queue(ctx, mSigningKeyUpdate, content, dests)
}

// QueueToDevice queues, inside the caller's transaction, one m.direct_to_device EDU per
// remote server for the messages to that server's users in messages (user ID -> device ID
// or "*" -> content); messages to local users are the caller's. Each EDU gets a new random
// message_id, which the receiver uses to drop repeats. The returned function wakes the
// sender and must be called after the commit.
func (e *EDUSender) QueueToDevice(ctx context.Context, tx *storage.Tx, sender, evType string, messages map[string]map[string]json.RawMessage) (func(), error) {
	byServer := map[string]map[string]map[string]json.RawMessage{}
	for userID, byDevice := range messages {
		u, err := spec.NewUserID(userID, true)
		if err != nil || u.Domain() == e.s.cfg.ServerName || len(byDevice) == 0 {
			continue
		}
		server := string(u.Domain())
		if byServer[server] == nil {
			byServer[server] = map[string]map[string]json.RawMessage{}
		}
		byServer[server][userID] = byDevice
	}
	dests := make([]string, 0, len(byServer))
	for server, msgs := range byServer {
		js, err := json.Marshal(gomatrixserverlib.ToDeviceMessage{Sender: sender, Type: evType, MessageID: newMessageID(), Messages: msgs})
		if err != nil {
			return nil, err
		}
		if err := tx.QueueEDU(ctx, server, spec.MDirectToDevice, js); err != nil {
			return nil, err
		}
		dests = append(dests, server)
	}
	return func() { e.wake(dests) }, nil
}

// newMessageID returns a random message_id (the spec allows 32 codepoints; this is 22).
func newMessageID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return strings.TrimRight(base64.RawURLEncoding.EncodeToString(b), "=")
}
