package federationapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// spaceFixture is a space of alice's on ts with one child of each kind of access.
type spaceFixture struct {
	space, pub, priv, readable, restricted, openRestricted string
}

// newSpaceFixture builds, on rs: a public space whose children are a public room
// (suggested), an invite-only room, an invite-only world-readable room, a room restricted
// to the space's members, a room restricted to a room this server is not in, a room this
// server does not know, and a removed child (no via).
func newSpaceFixture(t *testing.T, rs *roomserver.Server, alice string) spaceFixture {
	t.Helper()
	ctx := context.Background()
	create := func(name, preset string, content map[string]any, state ...roomserver.InitialState) string {
		t.Helper()
		id, err := rs.CreateRoom(ctx, alice, "A", roomserver.CreateRoomRequest{Preset: preset, Name: &name, CreationContent: content, InitialState: state})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	restrictedTo := func(roomID string) roomserver.InitialState {
		return roomserver.InitialState{Type: "m.room.join_rules", Content: json.RawMessage(
			`{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"` + roomID + `"}]}`)}
	}
	var f spaceFixture
	f.space = create("Space", roomserver.PresetPublicChat, map[string]any{"type": "m.space"})
	f.pub = create("Public", roomserver.PresetPublicChat, nil)
	f.priv = create("Private", roomserver.PresetPrivateChat, nil)
	f.readable = create("Readable", roomserver.PresetPrivateChat, nil, roomserver.InitialState{
		Type: "m.room.history_visibility", Content: json.RawMessage(`{"history_visibility":"world_readable"}`)})
	f.restricted = create("Restricted", roomserver.PresetPrivateChat, nil, restrictedTo(f.space))
	f.openRestricted = create("Elsewhere", roomserver.PresetPrivateChat, nil, restrictedTo("!unknown:elsewhere.test"))
	child := func(roomID, content string) {
		t.Helper()
		if _, err := rs.SetState(ctx, roomserver.Sender{UserID: alice}, f.space, "m.space.child", roomID, json.RawMessage(content)); err != nil {
			t.Fatal(err)
		}
	}
	via := `"via":["` + string(ourName) + `"]`
	child(f.pub, `{`+via+`,"suggested":true,"order":"a"}`)
	for _, id := range []string{f.priv, f.readable, f.restricted, f.openRestricted, "!unknown:remote.test"} {
		child(id, `{`+via+`}`)
	}
	child("!removed:remote.test", `{}`)
	return f
}

// roomIDs returns the room_id of each object of list.
func roomIDs(list any) []string {
	var out []string
	for _, v := range list.([]any) {
		out = append(out, v.(map[string]any)["room_id"].(string))
	}
	slices.Sort(out)
	return out
}

// strs returns list as sorted strings.
func strs(list any) []string {
	var out []string
	for _, v := range list.([]any) {
		out = append(out, v.(string))
	}
	slices.Sort(out)
	return out
}

func sorted(ids ...string) []string {
	slices.Sort(ids)
	return ids
}

// TestHierarchyEndpoint drives GET /_matrix/federation/v1/hierarchy/{roomId} through the
// router, signed by a server with no user in any room and then by one with a user in the
// space: children it may peek or join are described, the others listed as inaccessible,
// unknown children left out, suggested_only honoured, and rooms it may not see are 404.
func TestHierarchyEndpoint(t *testing.T) {
	ts := newTestServer(t)
	rs := withRoomserver(t, ts)
	const alice = "@alice:lattice.test"
	f := newSpaceFixture(t, rs, alice)
	remote := newIdentity(t, "remote.test", "ed25519:r1")
	ts.cacheKeys(t, remote.keys(t, ts.now.Add(time.Hour)))
	get := func(roomID, query string) (int, map[string]any) {
		t.Helper()
		return ts.do(t, signedRequest(t, remote, ourName, "GET", "/_matrix/federation/v1/hierarchy/"+url.PathEscape(roomID)+query, nil))
	}

	code, body := get(f.space, "")
	if code != 200 {
		t.Fatalf("hierarchy: %d %v", code, body)
	}
	room, _ := body["room"].(map[string]any)
	if room["room_id"] != f.space || room["name"] != "Space" || room["room_type"] != "m.space" || room["join_rule"] != "public" ||
		room["room_version"] == nil || room["membership"] != nil {
		t.Fatalf("room: %v", room)
	}
	states, _ := room["children_state"].([]any)
	if len(states) != 6 {
		t.Fatalf("children_state: %v", states)
	}
	for _, st := range states {
		ev := st.(map[string]any)
		if ev["type"] != "m.space.child" || ev["sender"] != alice || ev["origin_server_ts"] == nil || ev["event_id"] != nil {
			t.Fatalf("children_state entry: %v", ev)
		}
	}
	if got, want := roomIDs(body["children"]), sorted(f.pub, f.readable, f.openRestricted); !slices.Equal(got, want) {
		t.Fatalf("children of a stranger: %v, want %v", got, want)
	}
	if got, want := strs(body["inaccessible_children"]), sorted(f.priv, f.restricted); !slices.Equal(got, want) {
		t.Fatalf("inaccessible_children of a stranger: %v, want %v", got, want)
	}
	for _, c := range body["children"].([]any) {
		c := c.(map[string]any)
		if _, ok := c["children_state"].([]any); !ok || c["num_joined_members"] != float64(1) {
			t.Fatalf("child: %v", c)
		}
		if c["room_id"] == f.openRestricted && fmt.Sprint(c["allowed_room_ids"]) != "[!unknown:elsewhere.test]" {
			t.Fatalf("restricted child without allowed_room_ids: %v", c)
		}
	}

	code, body = get(f.space, "?suggested_only=true")
	if code != 200 || !slices.Equal(roomIDs(body["children"]), []string{f.pub}) || len(body["inaccessible_children"].([]any)) != 0 {
		t.Fatalf("suggested only: %d %v", code, body)
	}
	for name, roomID := range map[string]string{"an unknown room": "!nope:lattice.test", "an invite-only room": f.priv} {
		if code, body := get(roomID, ""); code != 404 || body["errcode"] != "M_NOT_FOUND" {
			t.Errorf("%s: %d %v, want 404 M_NOT_FOUND", name, code, body)
		}
	}
	if code, body := get(f.readable, ""); code != 200 || body["room"].(map[string]any)["world_readable"] != true {
		t.Fatalf("a world-readable room: %d %v", code, body)
	}

	// Once a user of remote.test is in the space, the room restricted to it is visible.
	remoteJoin(t, ts, remote, f.space, "@bob:remote.test")
	code, body = get(f.space, "")
	if got, want := roomIDs(body["children"]), sorted(f.pub, f.readable, f.restricted, f.openRestricted); code != 200 || !slices.Equal(got, want) {
		t.Fatalf("children of a server in the space: %d %v, want %v", code, got, want)
	}
	if got := strs(body["inaccessible_children"]); !slices.Equal(got, []string{f.priv}) {
		t.Fatalf("inaccessible_children of a server in the space: %v", got)
	}
}

// remoteJoin joins userID of remote to roomID with make_join and send_join.
func remoteJoin(t *testing.T, ts *testServer, remote identity, roomID, userID string) {
	t.Helper()
	room := url.PathEscape(roomID)
	code, body := ts.do(t, signedRequest(t, remote, ourName, "GET", "/_matrix/federation/v1/make_join/"+room+"/"+url.PathEscape(userID)+"?ver=12", nil))
	if code != 200 {
		t.Fatalf("make_join: %d %v", code, body)
	}
	raw, _ := json.Marshal(body["event"])
	var proto gomatrixserverlib.ProtoEvent
	if err := json.Unmarshal(raw, &proto); err != nil {
		t.Fatal(err)
	}
	join, err := gomatrixserverlib.MustGetRoomVersion("12").NewEventBuilderFromProtoEvent(&proto).Build(time.Now(), remote.name, remote.keyID, remote.priv)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := ts.do(t, signedRequest(t, remote, ourName, "PUT", "/_matrix/federation/v2/send_join/"+room+"/"+url.PathEscape(join.EventID()), json.RawMessage(join.JSON()))); code != 200 {
		t.Fatalf("send_join: %d %v", code, body)
	}
}

// TestRemoteHierarchy asks a federation listener (over TLS, at a loopback address that is
// its server name) for a space through RemoteHierarchy: the answer is parsed, cached for
// remoteHierarchyTTL, a 404 is M_NOT_FOUND, and a server that does not answer costs
// remoteHierarchyTimeout.
func TestRemoteHierarchy(t *testing.T) {
	var hits atomic.Int32
	var answering http.Handler
	listener := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		answering.ServeHTTP(w, r)
	}))
	listener.StartTLS()
	t.Cleanup(listener.Close)
	name := spec.ServerName(listener.Listener.Addr().String())

	// The answering server, named after its address.
	ctx := context.Background()
	db, err := storage.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "answering.db"), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	them := newIdentity(t, name, "ed25519:a")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := New(Config{ServerName: name, KeyID: them.keyID, PrivateKey: them.priv, KeyValidity: time.Hour, Version: "test"}, db, log)
	if err != nil {
		t.Fatal(err)
	}
	keys := &fakeKeyClient{keys: map[spec.ServerName]gomatrixserverlib.ServerKeys{}}
	srv.fetcher.client = keys
	rs := roomserver.New(roomserver.Config{ServerName: name, KeyID: them.keyID, PrivateKey: them.priv, DefaultVersion: "12"}, db, nopListener{}, log)
	srv.SetRoomserver(rs)
	answering = srv.Handler(1 << 20)
	alice := "@alice:" + string(name)
	space, err := rs.CreateRoom(ctx, alice, "A", roomserver.CreateRoomRequest{Preset: roomserver.PresetPublicChat, CreationContent: map[string]any{"type": "m.space"}})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := rs.CreateRoom(ctx, alice, "A", roomserver.CreateRoomRequest{Preset: roomserver.PresetPublicChat})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs.SetState(ctx, roomserver.Sender{UserID: alice}, space, "m.space.child", pub, json.RawMessage(`{"via":["`+string(name)+`"]}`)); err != nil {
		t.Fatal(err)
	}

	// The asking server (ts), whose keys the answering one knows.
	ts := newTestServer(t)
	keys.set(ts.us.keys(t, time.Now().Add(time.Hour)))
	ts.cfg.VerifyTLS = false
	client, err := NewClient(ClientConfig{ServerName: ourName, KeyID: ourKeyID, PrivateKey: ts.us.priv, Guard: loopbackGuard(t)})
	if err != nil {
		t.Fatal(err)
	}
	ts.client = client
	rh := ts.RemoteHierarchy()

	h, err := rh.Hierarchy(ctx, space, []string{string(ourName), string(name)}, false)
	if err != nil {
		t.Fatal(err)
	}
	if h.Room["room_id"] != space || len(h.Children) != 1 || h.Children[0]["room_id"] != pub || len(h.InaccessibleChildren) != 0 {
		t.Fatalf("hierarchy: %+v", h)
	}
	if _, err := rh.Hierarchy(ctx, space, []string{string(name)}, false); err != nil || hits.Load() != 1 {
		t.Fatalf("second ask: %v, %d requests, want 1 (cached)", err, hits.Load())
	}
	if _, err := rh.Hierarchy(ctx, "!nope:"+string(name), []string{string(name)}, false); !isMatrixError(err, spec.ErrorNotFound) {
		t.Fatalf("unknown room: %v, want M_NOT_FOUND", err)
	}

	// A server that accepts connections and never answers.
	silent := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	silent.StartTLS()
	t.Cleanup(silent.Close)
	start := time.Now()
	if _, err := rh.Hierarchy(ctx, "!other:"+string(name), []string{silent.Listener.Addr().String()}, false); err == nil {
		t.Fatal("a silent server answered")
	}
	if d := time.Since(start); d > remoteHierarchyTimeout+2*time.Second {
		t.Fatalf("a silent server held the lookup for %s", d)
	}
}

// isMatrixError reports whether err is a spec.MatrixError with code.
func isMatrixError(err error, code spec.MatrixErrorCode) bool {
	me, ok := err.(spec.MatrixError)
	return ok && me.ErrCode == code
}
