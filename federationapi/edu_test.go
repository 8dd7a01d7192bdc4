package federationapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

const (
	alice   = "@alice:lattice.test"
	bob     = "@bob:remote.test"   // joined to the room
	carol   = "@carol:remote.test" // not joined
	remote1 = spec.ServerName("remote.test")
)

// wakeCall is one call of Waker.Wake.
type wakeCall struct {
	Stream storage.Stream
	Users  []string
}

// fakeWaker records the wakes.
type fakeWaker struct {
	mu    sync.Mutex
	wakes []wakeCall // guarded by mu
}

func (f *fakeWaker) Wake(stream storage.Stream, _ int64, users []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := slices.Clone(users)
	slices.Sort(u)
	f.wakes = append(f.wakes, wakeCall{stream, u})
}

func (f *fakeWaker) take() []wakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.wakes
	f.wakes = nil
	return w
}

// typingCall is one call of Typer.Set.
type typingCall struct {
	RoomID, UserID string
	Typing         bool
}

type fakeTyper struct{ calls []typingCall }

func (f *fakeTyper) Set(roomID, userID string, typing bool, _ time.Duration) {
	f.calls = append(f.calls, typingCall{roomID, userID, typing})
}

// eduFixture is a federation API with a roomserver and one room, created by alice, which
// bob of remote.test has joined; alice has the devices A1 and A2.
type eduFixture struct {
	*testServer
	rs     *roomserver.Server
	roomID string
	waker  *fakeWaker
	typer  *fakeTyper
	remote identity
}

func newEDUFixture(t *testing.T) *eduFixture {
	t.Helper()
	ctx := context.Background()
	ts := newTestServer(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rsCfg := roomserver.Config{ServerName: ourName, KeyID: ourKeyID, PrivateKey: ts.us.priv, DefaultVersion: "12"}
	creator := roomserver.New(rsCfg, ts.db, nil, log)
	roomID, err := creator.CreateRoom(ctx, alice, "A1", roomserver.CreateRoomRequest{Preset: roomserver.PresetPublicChat})
	if err != nil {
		t.Fatal(err)
	}
	// Bob's join is written as a membership row (joins over federation are not what is
	// tested here); a fresh roomserver loads it.
	room, err := ts.db.Room(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	err = ts.db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.SetMembership(ctx, room.NID, bob, spec.Join, 1); err != nil {
			return err
		}
		for _, d := range []string{"A1", "A2"} {
			if err := tx.UpsertDevice(ctx, storage.Device{UserID: alice, DeviceID: d}, "hash"+d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rs := roomserver.New(rsCfg, ts.db, nil, log)
	f := &eduFixture{testServer: ts, rs: rs, roomID: roomID, waker: &fakeWaker{}, typer: &fakeTyper{}, remote: newIdentity(t, remote1, "ed25519:r1")}
	ts.SetRoomserver(rs)
	ts.SetNotifier(f.waker)
	ts.SetTyping(f.typer)
	ts.cacheKeys(t, f.remote.keys(t, ts.now.Add(time.Hour)))
	return f
}

func edu(t *testing.T, typ string, content any) gomatrixserverlib.EDU {
	t.Helper()
	js, err := json.Marshal(content)
	if err != nil {
		t.Fatal(err)
	}
	return gomatrixserverlib.EDU{Type: typ, Content: js}
}

// setACL gives the room an ACL denying remote.test.
func (f *eduFixture) denyRemote(t *testing.T) {
	t.Helper()
	_, err := f.rs.SetState(context.Background(), roomserver.Sender{UserID: alice}, f.roomID, "m.room.server_acl", "",
		json.RawMessage(`{"allow":["*"],"deny":["remote.test"]}`))
	if err != nil {
		t.Fatal(err)
	}
}

// TestEDUsThroughSend sends a transaction with EDUs, a malformed and an unknown one among
// them, through the real /send route: the transaction succeeds and the good EDUs apply.
func TestEDUsThroughSend(t *testing.T) {
	f := newEDUFixture(t)
	txn := map[string]any{"origin": "remote.test", "origin_server_ts": 1, "pdus": []any{}, "edus": []any{
		map[string]any{"edu_type": "m.typing", "content": "not an object"},
		map[string]any{"edu_type": "m.receipt", "content": map[string]any{f.roomID: 7}},
		map[string]any{"edu_type": "m.direct_to_device", "content": map[string]any{"messages": []any{}}},
		map[string]any{"edu_type": "org.example.unknown", "content": map[string]any{"x": 1}},
		map[string]any{"edu_type": "m.typing", "content": map[string]any{"room_id": f.roomID, "user_id": bob, "typing": true}},
	}}
	code, body := f.do(t, signedRequest(t, f.remote, ourName, http.MethodPut, "/_matrix/federation/v1/send/t1", txn))
	if code != 200 {
		t.Fatalf("send: %d %v", code, body)
	}
	if diff := cmp.Diff([]typingCall{{f.roomID, bob, true}}, f.typer.calls); diff != "" {
		t.Errorf("typing (-want +got):\n%s", diff)
	}
}

// TestTypingEDU: a typing notification applies only for a user of the sending server who
// is joined to the room, from a server the room's ACL allows.
func TestTypingEDU(t *testing.T) {
	f := newEDUFixture(t)
	ctx := context.Background()
	typing := func(origin spec.ServerName, roomID, userID string, on bool) {
		f.handleEDUs(ctx, origin, []gomatrixserverlib.EDU{edu(t, "m.typing", map[string]any{"room_id": roomID, "user_id": userID, "typing": on})})
	}
	typing(remote1, f.roomID, bob, true)
	typing("other.test", f.roomID, bob, true)          // not bob's server
	typing(remote1, f.roomID, carol, true)             // not joined
	typing(remote1, "!unknown:remote.test", bob, true) // unknown room
	typing(remote1, f.roomID, bob, false)
	f.denyRemote(t)
	typing(remote1, f.roomID, bob, true) // denied by the ACL
	want := []typingCall{{f.roomID, bob, true}, {f.roomID, bob, false}}
	if diff := cmp.Diff(want, f.typer.calls); diff != "" {
		t.Errorf("typing (-want +got):\n%s", diff)
	}
}

// TestReceiptEDU: bob's read receipt for an event of the room is stored and wakes the room;
// receipts of non-members, of other servers' users, for unknown events and private ones
// are dropped, and all receipts of a room whose ACL denies the sender.
func TestReceiptEDU(t *testing.T) {
	f := newEDUFixture(t)
	ctx := context.Background()
	eventID, err := f.rs.SendMessage(ctx, roomserver.Sender{UserID: alice, DeviceID: "A1"}, f.roomID, "m.room.message", json.RawMessage(`{"body":"hi","msgtype":"m.text"}`), "t1")
	if err != nil {
		t.Fatal(err)
	}
	receipt := func(userID, typ, eventID string) map[string]any {
		return map[string]any{f.roomID: map[string]any{typ: map[string]any{userID: map[string]any{
			"event_ids": []string{eventID}, "data": map[string]any{"ts": 1234, "thread_id": "main"}}}}}
	}
	f.handleEDUs(ctx, remote1, []gomatrixserverlib.EDU{
		edu(t, "m.receipt", receipt(carol, "m.read", eventID)),
		edu(t, "m.receipt", receipt("@bob:other.test", "m.read", eventID)),
		edu(t, "m.receipt", receipt(bob, "m.read", "$unknown")),
		edu(t, "m.receipt", receipt(bob, "m.read.private", eventID)),
	})
	if got := f.receipts(t); len(got) != 0 {
		t.Fatalf("dropped receipts stored: %+v", got)
	}
	f.handleEDUs(ctx, remote1, []gomatrixserverlib.EDU{edu(t, "m.receipt", receipt(bob, "m.read", eventID))})
	got := f.receipts(t)
	if len(got) != 1 || got[0].UserID != bob || got[0].EventID != eventID || got[0].ThreadID != "main" || got[0].TS != 1234 {
		t.Fatalf("receipts: %+v", got)
	}
	if diff := cmp.Diff([]wakeCall{{storage.StreamReceipts, []string{alice, bob}}}, f.waker.take()); diff != "" {
		t.Errorf("wakes (-want +got):\n%s", diff)
	}
	f.denyRemote(t)
	eventID2, err := f.rs.SendMessage(ctx, roomserver.Sender{UserID: alice, DeviceID: "A1"}, f.roomID, "m.room.message", json.RawMessage(`{"body":"2","msgtype":"m.text"}`), "t2")
	if err != nil {
		t.Fatal(err)
	}
	f.waker.take()
	f.handleEDUs(ctx, remote1, []gomatrixserverlib.EDU{edu(t, "m.receipt", receipt(bob, "m.read", eventID2))})
	if got := f.receipts(t); len(got) != 1 || got[0].EventID != eventID {
		t.Errorf("a receipt from a denied server was stored: %+v", got)
	}
}

// receipts returns the receipts alice sees.
func (f *eduFixture) receipts(t *testing.T) []storage.Receipt {
	t.Helper()
	rs, err := f.db.ReceiptsSince(context.Background(), alice, 0, 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestPresenceEDU: bob's presence is stored and wakes alice; carol's (sharing no room with
// a local user) and another server's user's are not stored.
func TestPresenceEDU(t *testing.T) {
	f := newEDUFixture(t)
	ctx := context.Background()
	push := func(userID, state string) gomatrixserverlib.EDU {
		return edu(t, "m.presence", map[string]any{"push": []any{map[string]any{
			"user_id": userID, "presence": state, "status_msg": "lunch", "last_active_ago": 5000, "currently_active": false}}})
	}
	f.handleEDUs(ctx, remote1, []gomatrixserverlib.EDU{push(bob, "unavailable"), push(carol, "online"), push("@bob:other.test", "online"), push(bob, "sleeping")})
	p, err := f.db.Presence(ctx, bob)
	if err != nil {
		t.Fatal(err)
	}
	if p.State != "unavailable" || p.StatusMsg != "lunch" || p.LastActiveTS != f.now.UnixMilli()-5000 {
		t.Errorf("bob's presence: %+v", p)
	}
	for _, u := range []string{carol, "@bob:other.test"} {
		if _, err := f.db.Presence(ctx, u); err == nil {
			t.Errorf("presence of %s stored", u)
		}
	}
	if diff := cmp.Diff([]wakeCall{{storage.StreamPresence, []string{alice}}}, f.waker.take()); diff != "" {
		t.Errorf("wakes (-want +got):\n%s", diff)
	}
}

// TestDeviceListEDUs: a device list update and a signing key update of bob show in alice's
// device list changes and wake her; one for another server's user does not.
func TestDeviceListEDUs(t *testing.T) {
	for _, typ := range []string{"m.device_list_update", "m.signing_key_update"} {
		t.Run(typ, func(t *testing.T) {
			f := newEDUFixture(t)
			ctx := context.Background()
			content := func(userID string) map[string]any {
				return map[string]any{"user_id": userID, "device_id": "B1", "stream_id": 3, "prev_id": []int{2}}
			}
			f.handleEDUs(ctx, remote1, []gomatrixserverlib.EDU{edu(t, typ, content("@bob:other.test")), edu(t, typ, content(carol))})
			if w := f.waker.take(); len(w) != 0 {
				t.Fatalf("woken for dropped updates: %v", w)
			}
			f.handleEDUs(ctx, remote1, []gomatrixserverlib.EDU{edu(t, typ, content(bob))})
			changed, _, err := f.db.DeviceListChanges(ctx, alice, 0, 0, 0, 1<<40)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{bob}, changed); diff != "" {
				t.Errorf("changed (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]wakeCall{{storage.StreamDeviceLists, []string{alice}}}, f.waker.take()); diff != "" {
				t.Errorf("wakes (-want +got):\n%s", diff)
			}
		})
	}
}

// TestToDeviceEDU: messages reach the named device or, with "*", every device of a local
// user; a repeated message_id is not delivered again; a sender of another server, remote
// targets and unknown devices are dropped.
func TestToDeviceEDU(t *testing.T) {
	f := newEDUFixture(t)
	ctx := context.Background()
	msg := func(sender, id string, messages map[string]any) gomatrixserverlib.EDU {
		return edu(t, "m.direct_to_device", map[string]any{"sender": sender, "type": "m.room_key_request", "message_id": id, "messages": messages})
	}
	f.handleEDUs(ctx, remote1, []gomatrixserverlib.EDU{
		msg(bob, "m1", map[string]any{alice: map[string]any{"*": map[string]any{"n": 1}, "A2": map[string]any{"n": 2}}, carol: map[string]any{"*": map[string]any{}}}),
		msg(bob, "m1", map[string]any{alice: map[string]any{"*": map[string]any{"n": 3}}}),               // repeated
		msg("@bob:other.test", "m2", map[string]any{alice: map[string]any{"*": map[string]any{"n": 4}}}), // not of origin
		msg(bob, "m3", map[string]any{alice: map[string]any{"NOPE": map[string]any{"n": 5}}}),            // unknown device
	})
	for dev, want := range map[string][]string{"A1": {`{"n":1}`}, "A2": {`{"n":2}`}} {
		msgs, err := f.db.ToDeviceMessages(ctx, alice, dev, 0, 1<<40, 10)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range msgs {
			if m.Sender != bob || m.Type != "m.room_key_request" {
				t.Errorf("message %+v", m)
			}
			got = append(got, m.Content)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("messages of %s (-want +got):\n%s", dev, diff)
		}
	}
	if diff := cmp.Diff([]wakeCall{{storage.StreamToDevice, []string{alice}}}, f.waker.take()); diff != "" {
		t.Errorf("wakes (-want +got):\n%s", diff)
	}
}

// queued returns the EDUs queued for dest, taking them as one transaction.
func (f *eduFixture) queued(t *testing.T, dest string) []map[string]any {
	t.Helper()
	ctx := context.Background()
	txn, err := f.db.NextFederationTxn(ctx, dest, 50, 100, "txn-"+time.Now().String())
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	if err := f.db.FederationTxnSent(ctx, dest, txn.ID); err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, e := range txn.EDUs {
		var c map[string]any
		if err := json.Unmarshal(e.Content, &c); err != nil {
			t.Fatal(err)
		}
		out = append(out, map[string]any{"type": e.Type, "content": c})
	}
	return out
}

// TestEDUSender queues each kind of outbound EDU for the servers that should get it: the
// room's other servers for typing and receipts, the servers sharing a room for presence and
// device changes, the target's server for to-device messages; never for this server.
func TestEDUSender(t *testing.T) {
	f := newEDUFixture(t)
	ctx := context.Background()
	out := f.EDUSender()
	err := f.db.WithTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.SetDeviceKeys(ctx, alice, "A1", `{"device_id":"A1","user_id":"@alice:lattice.test"}`); err != nil {
			return err
		}
		if err := tx.SetCrossSigningKey(ctx, alice, storage.KeyMaster, `{"user_id":"@alice:lattice.test","keys":{"ed25519:M":"M"}}`); err != nil {
			return err
		}
		_, err := tx.SetPresence(ctx, storage.Presence{UserID: alice, State: "online", StatusMsg: "hi", LastActiveTS: f.now.UnixMilli() - 10})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	out.Typing(ctx, f.roomID, alice, true)
	out.Receipt(ctx, f.roomID, alice, "m.read", "$e", "main", 99)
	out.Receipt(ctx, f.roomID, alice, "m.read.private", "$e", "", 99)
	out.Presence(ctx, alice)
	out.SigningKeysChanged(ctx, alice)
	want := []map[string]any{
		{"type": "m.typing", "content": map[string]any{"room_id": f.roomID, "user_id": alice, "typing": true}},
		{"type": "m.receipt", "content": map[string]any{f.roomID: map[string]any{"m.read": map[string]any{
			alice: map[string]any{"event_ids": []any{"$e"}, "data": map[string]any{"ts": 99.0, "thread_id": "main"}}}}}},
		{"type": "m.presence", "content": map[string]any{"push": []any{map[string]any{"user_id": alice, "presence": "online",
			"status_msg": "hi", "last_active_ago": 10.0, "currently_active": true}}}},
		{"type": "m.signing_key_update", "content": map[string]any{"user_id": alice,
			"master_key": map[string]any{"user_id": alice, "keys": map[string]any{"ed25519:M": "M"}}}},
	}
	if diff := cmp.Diff(want, f.queued(t, "remote.test")); diff != "" {
		t.Errorf("EDUs (-want +got):\n%s", diff)
	}

	// Device list updates chain: stream IDs increase, each names the one before.
	out.DeviceListChanged(ctx, alice, []string{"A1"})
	if err := f.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.DeleteDevices(ctx, alice, "A2") }); err != nil {
		t.Fatal(err)
	}
	out.DeviceListChanged(ctx, alice, []string{"A2"})
	got := f.queued(t, "remote.test")
	if len(got) != 2 {
		t.Fatalf("device list updates: %v", got)
	}
	first, second := got[0]["content"].(map[string]any), got[1]["content"].(map[string]any)
	id1, _ := first["stream_id"].(float64)
	if id1 == 0 || first["prev_id"] != nil || first["deleted"] != nil || first["device_id"] != "A1" ||
		!cmp.Equal(first["keys"], map[string]any{"device_id": "A1", "user_id": alice}) {
		t.Errorf("first update: %v", first)
	}
	if id2, _ := second["stream_id"].(float64); id2 <= id1 || second["device_id"] != "A2" || second["deleted"] != true ||
		!cmp.Equal(second["prev_id"], []any{id1}) || second["keys"] != nil {
		t.Errorf("second update: %v (first %v)", second, id1)
	}

	// To-device messages: one EDU per remote server, none for local users.
	var wake func()
	err = f.db.WithTx(ctx, func(tx *storage.Tx) error {
		var err error
		wake, err = out.QueueToDevice(ctx, tx, alice, "m.room_key", map[string]map[string]json.RawMessage{
			bob:      {"B1": json.RawMessage(`{"k":1}`)},
			carol:    {"*": json.RawMessage(`{"k":2}`)},
			alice:    {"A1": json.RawMessage(`{"k":3}`)},
			"@d:x.y": {"*": json.RawMessage(`{"k":4}`)},
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	wake()
	got = f.queued(t, "remote.test")
	if len(got) != 1 {
		t.Fatalf("to-device EDUs: %v", got)
	}
	c := got[0]["content"].(map[string]any)
	if id, _ := c["message_id"].(string); id == "" || len([]rune(id)) > 32 {
		t.Errorf("message_id %q", id)
	}
	delete(c, "message_id")
	wantMsg := map[string]any{"sender": alice, "type": "m.room_key", "messages": map[string]any{
		bob: map[string]any{"B1": map[string]any{"k": 1.0}}, carol: map[string]any{"*": map[string]any{"k": 2.0}}}}
	if diff := cmp.Diff(wantMsg, c); diff != "" {
		t.Errorf("to-device EDU (-want +got):\n%s", diff)
	}
	if got := f.queued(t, "x.y"); len(got) != 1 || got[0]["type"] != "m.direct_to_device" {
		t.Errorf("to-device EDU for x.y: %v", got)
	}
	if got := f.queued(t, string(ourName)); len(got) != 0 {
		t.Errorf("EDUs queued for ourselves: %v", got)
	}
}
