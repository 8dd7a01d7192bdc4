package federationapi

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// loopbackServer is a federation API with its roomserver, listening with TLS on loopback
// under its address as server name.
type loopbackServer struct {
	fed  *Server
	rs   *roomserver.Server
	name spec.ServerName
}

func newLoopbackServer(t *testing.T) *loopbackServer {
	t.Helper()
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	name := spec.ServerName(ln.Addr().String())
	db, err := storage.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "lattice.db"), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	fed, err := New(Config{ServerName: name, KeyID: "ed25519:k", PrivateKey: priv, KeyValidity: time.Hour, Guard: loopbackGuard(t), Version: "test"}, db, log)
	if err != nil {
		t.Fatal(err)
	}
	rs := roomserver.New(roomserver.Config{ServerName: name, KeyID: "ed25519:k", PrivateKey: priv, DefaultVersion: "12"}, db, nopListener{}, log)
	fed.SetRoomserver(rs)
	rs.SetRemote(fed.Remote())
	srv := httptest.NewUnstartedServer(fed.Handler(1 << 20))
	srv.Listener.Close()
	srv.Listener = ln
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &loopbackServer{fed: fed, rs: rs, name: name}
}

// TestRemoteOverLoopback has one server read a world-readable room of another through
// roomserver.Remote (the other's event endpoints answering), then join and leave it.
func TestRemoteOverLoopback(t *testing.T) {
	ctx := context.Background()
	a, b := newLoopbackServer(t), newLoopbackServer(t)
	alice := "@alice:" + string(a.name)
	bob := "@bob:" + string(b.name)
	roomID, err := a.rs.CreateRoom(ctx, alice, "A", roomserver.CreateRoomRequest{Preset: roomserver.PresetPublicChat,
		InitialState: []roomserver.InitialState{{Type: "m.room.history_visibility", Content: json.RawMessage(`{"history_visibility":"world_readable"}`)}}})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, body := range []string{"one", "two", "three"} {
		id, err := a.rs.SendMessage(ctx, roomserver.Sender{UserID: alice, DeviceID: "A"}, roomID, "m.room.message", json.RawMessage(`{"body":"`+body+`"}`), "")
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, id)
	}
	ver := gomatrixserverlib.MustGetRoomVersion("12")
	rem := b.fed.Remote()

	ev, err := rem.Event(ctx, a.name, ver, msgs[1])
	if err != nil || ev.EventID() != msgs[1] || ev.Redacted() {
		t.Fatalf("event: %v %v", ev, err)
	}
	state, chain, err := rem.StateIDs(ctx, a.name, roomID, msgs[1])
	if err != nil || len(state) < 5 || len(chain) < 3 {
		t.Fatalf("state_ids: %v %v %v", state, chain, err)
	}
	auth, err := rem.EventAuth(ctx, a.name, ver, roomID, msgs[2])
	if err != nil || len(auth) != 3 {
		t.Fatalf("event_auth: %d %v", len(auth), err)
	}
	back, err := rem.Backfill(ctx, a.name, ver, roomID, []string{msgs[2]}, 3)
	if err != nil || len(back) != 3 || back[0].EventID() != msgs[2] {
		t.Fatalf("backfill: %v %v", back, err)
	}
	missing, err := rem.MissingEvents(ctx, a.name, ver, roomID, []string{msgs[0]}, []string{msgs[2]}, 10, 0)
	if err != nil || len(missing) != 1 || missing[0].EventID() != msgs[1] {
		t.Fatalf("get_missing_events: %v %v", missing, err)
	}
	if _, err := rem.Event(ctx, a.name, ver, "$nope"); err == nil {
		t.Fatal("an unknown event was found")
	}

	// The invite goes to bob's server, which countersigns it (PUT /invite).
	if err := a.rs.Invite(ctx, alice, roomID, bob, ""); err != nil {
		t.Fatalf("invite: %v", err)
	}
	if m, _ := a.rs.Membership(ctx, roomID, bob); m != spec.Invite {
		t.Fatalf("bob's membership after the invite: %q", m)
	}

	// The first server refuses connections; the join goes through the second.
	res, err := rem.Join(ctx, []spec.ServerName{"127.0.0.1:1", a.name}, roomID, bob, map[string]any{"membership": "join"})
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	if res.Via != a.name || res.Version.Version() != "12" || res.Event.SenderID() != spec.SenderID(bob) || len(res.State) < 5 || len(res.AuthChain) < 3 {
		t.Fatalf("join result: via %s, %d state, %d auth", res.Via, len(res.State), len(res.AuthChain))
	}
	if m, _ := a.rs.Membership(ctx, roomID, bob); m != spec.Join {
		t.Fatalf("bob's membership on the resident server: %q", m)
	}
	leave, err := rem.Leave(ctx, []spec.ServerName{a.name}, roomID, bob)
	if err != nil {
		t.Fatalf("leave: %v", err)
	}
	if m, _ := leave.Membership(); m != spec.Leave {
		t.Fatalf("leave event membership %q", m)
	}
	if m, _ := a.rs.Membership(ctx, roomID, bob); m != spec.Leave {
		t.Fatalf("bob's membership on the resident server after leaving: %q", m)
	}
}

// TestServersInRoom: a partial state answer's servers_in_room keeps valid names only, each
// once, and at most maxServersInRoom of them.
func TestServersInRoom(t *testing.T) {
	got := serversInRoom([]string{"a.example", "a.example", "..", "b.example:8448", "bad name", ""})
	if len(got) != 2 || got[0] != "a.example" || got[1] != "b.example:8448" {
		t.Fatalf("servers %v", got)
	}
	many := make([]string, maxServersInRoom+10)
	for i := range many {
		many[i] = fmt.Sprintf("s%d.example", i)
	}
	if n := len(serversInRoom(many)); n != maxServersInRoom {
		t.Fatalf("%d servers kept, want %d", n, maxServersInRoom)
	}
}
