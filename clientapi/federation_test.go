package clientapi_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/mux"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/clientapi"
	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/presence"
	"github.com/lattice-chat/lattice/internal/typing"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// fakeRemoteKeys answers key queries and claims as remote.test would; down.test fails.
type fakeRemoteKeys struct {
	mu    sync.Mutex
	asked map[spec.ServerName]any // guarded by mu
}

func (f *fakeRemoteKeys) record(server spec.ServerName, req any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked[server] = req
	if server == "down.test" {
		return errors.New("connection refused")
	}
	return nil
}

func (f *fakeRemoteKeys) QueryKeys(_ context.Context, server spec.ServerName, deviceKeys map[string][]string) (json.RawMessage, error) {
	if err := f.record(server, deviceKeys); err != nil {
		return nil, err
	}
	// Bob's device (with a key that is not base64, which must not matter), a device under
	// the wrong ID, a user not asked for, bob's master key and carol's under bob's name.
	return json.RawMessage(`{
		"device_keys": {
			"@bob:remote.test": {
				"B1": {"user_id": "@bob:remote.test", "device_id": "B1", "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
					"keys": {"ed25519:B1": "AAAA", "curve25519:B1": "not base64!"}, "signatures": {"@bob:remote.test": {"ed25519:B1": "c2ln"}},
					"unsigned": {"device_display_name": "phone"}},
				"B2": {"user_id": "@bob:remote.test", "device_id": "OTHER", "algorithms": [], "keys": {}}
			},
			"@mallory:remote.test": {"M1": {"user_id": "@mallory:remote.test", "device_id": "M1", "algorithms": [], "keys": {}}}
		},
		"master_keys": {"@bob:remote.test": {"user_id": "@bob:remote.test", "usage": ["master"], "keys": {"ed25519:AAAA": "AAAA"}}},
		"self_signing_keys": {"@bob:remote.test": {"user_id": "@carol:remote.test", "usage": ["self_signing"], "keys": {"ed25519:C": "C"}}}
	}`), nil
}

func (f *fakeRemoteKeys) ClaimKeys(_ context.Context, server spec.ServerName, oneTimeKeys map[string]map[string]string) (json.RawMessage, error) {
	if err := f.record(server, oneTimeKeys); err != nil {
		return nil, err
	}
	return json.RawMessage(`{"one_time_keys": {
		"@bob:remote.test": {"B1": {"signed_curve25519:K": {"key": "k"}}},
		"@mallory:remote.test": {"M1": {"signed_curve25519:K": {"key": "m"}}}
	}}`), nil
}

// fakeSink records the calls of the EDU sink as strings.
type fakeSink struct {
	mu    sync.Mutex
	calls []string // guarded by mu
}

func (f *fakeSink) add(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeSink) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeSink) Typing(_ context.Context, roomID, userID string, typing bool) {
	f.add("typing " + userID + " " + map[bool]string{true: "on", false: "off"}[typing])
}

func (f *fakeSink) Receipt(_ context.Context, roomID, userID, receiptType, eventID, threadID string, _ int64) {
	f.add("receipt " + userID + " " + receiptType)
}

func (f *fakeSink) Presence(_ context.Context, userID string) { f.add("presence " + userID) }

func (f *fakeSink) DeviceListChanged(_ context.Context, userID string, deviceIDs []string) {
	js, _ := json.Marshal(deviceIDs)
	f.add("devices " + userID + " " + string(js))
}

func (f *fakeSink) SigningKeysChanged(_ context.Context, userID string) {
	f.add("signing keys " + userID)
}

func (f *fakeSink) QueueToDevice(_ context.Context, _ *storage.Tx, sender, evType string, messages map[string]map[string]json.RawMessage) (func(), error) {
	var users []string
	for u := range messages {
		users = append(users, u)
	}
	js, _ := json.Marshal(users)
	f.add("to-device " + sender + " " + evType + " " + string(js))
	return func() { f.add("to-device woken") }, nil
}

// fedStack is a client API whose EDUs and remote key requests go to fakes.
type fedStack struct {
	handler http.Handler
	token   string
	userID  string
	sink    *fakeSink
	keys    *fakeRemoteKeys
}

func newFedStack(t *testing.T) *fedStack {
	t.Helper()
	ctx := context.Background()
	cfg := config.Default()
	cfg.ServerName = "localhost"
	cfg.DataDir = t.TempDir()
	cfg.Registration.Mode = config.RegistrationOpen
	db, err := storage.Open(ctx, "sqlite:"+filepath.Join(cfg.DataDir, "lattice.db"), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	_, key, _ := ed25519.GenerateKey(nil)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rooms := roomserver.New(roomserver.Config{ServerName: "localhost", KeyID: "ed25519:k", PrivateKey: key, DefaultVersion: "12"}, db, nil, log)
	typers := typing.New(rooms, nil, log)
	t.Cleanup(func() { typers.Close() })
	pres := presence.New(presence.Config{}, db, nil, log)
	t.Cleanup(func() { pres.Close() })
	api := clientapi.New(&cfg, db, rooms, nil, typers, pres, log)
	s := &fedStack{sink: &fakeSink{}, keys: &fakeRemoteKeys{asked: map[spec.ServerName]any{}}}
	api.SetEDUSink(s.sink)
	api.SetRemoteKeys(s.keys)
	router := mux.NewRouter().SkipClean(true).UseEncodedPath()
	api.Register(router)
	s.handler = httputil.Recover(log, router)
	_, reg := s.do(t, "POST", "/_matrix/client/v3/register", `{"username":"alice","password":"a-long-password","device_id":"A1","auth":{"type":"m.login.dummy"}}`)
	s.token, _ = reg["access_token"].(string)
	s.userID, _ = reg["user_id"].(string)
	if s.token == "" {
		t.Fatalf("register: %v", reg)
	}
	return s
}

func (s *fedStack) do(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	r := httptest.NewRequest(method, path, bytes.NewReader([]byte(body)))
	r.Header.Set("Content-Type", "application/json")
	if s.token != "" {
		r.Header.Set("Authorization", "Bearer "+s.token)
	}
	w := httptest.NewRecorder()
	s.handler.ServeHTTP(w, r)
	var out map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

// TestRemoteKeys: /keys/query and /keys/claim ask remote users' servers, keep only what
// was asked of each, and list a failing server in failures.
func TestRemoteKeys(t *testing.T) {
	s := newFedStack(t)
	code, res := s.do(t, "POST", "/_matrix/client/v3/keys/query",
		`{"device_keys": {"@bob:remote.test": [], "@carol:down.test": ["C1"]}, "timeout": 5000}`)
	if code != 200 {
		t.Fatalf("query: %d %v", code, res)
	}
	want := map[string]any{
		"device_keys": map[string]any{"@bob:remote.test": map[string]any{"B1": map[string]any{
			"user_id": "@bob:remote.test", "device_id": "B1", "algorithms": []any{"m.olm.v1.curve25519-aes-sha2"},
			"keys": map[string]any{"ed25519:B1": "AAAA", "curve25519:B1": "not base64!"}, "signatures": map[string]any{"@bob:remote.test": map[string]any{"ed25519:B1": "c2ln"}},
			"unsigned": map[string]any{"device_display_name": "phone"}}}},
		"master_keys": map[string]any{"@bob:remote.test": map[string]any{
			"user_id": "@bob:remote.test", "usage": []any{"master"}, "keys": map[string]any{"ed25519:AAAA": "AAAA"}}},
		"self_signing_keys": map[string]any{},
		"user_signing_keys": map[string]any{},
	}
	failures, _ := res["failures"].(map[string]any)
	delete(res, "failures")
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("query (-want +got):\n%s", diff)
	}
	if len(failures) != 1 || failures["down.test"] == nil {
		t.Errorf("query failures: %v", failures)
	}
	if diff := cmp.Diff(map[string][]string{"@carol:down.test": {"C1"}}, s.keys.asked["down.test"]); diff != "" {
		t.Errorf("asked of down.test (-want +got):\n%s", diff)
	}

	code, res = s.do(t, "POST", "/_matrix/client/v3/keys/claim",
		`{"one_time_keys": {"@bob:remote.test": {"B1": "signed_curve25519"}, "@carol:down.test": {"C1": "signed_curve25519"}}}`)
	if code != 200 {
		t.Fatalf("claim: %d %v", code, res)
	}
	wantClaim := map[string]any{"@bob:remote.test": map[string]any{"B1": map[string]any{"signed_curve25519:K": map[string]any{"key": "k"}}}}
	if diff := cmp.Diff(wantClaim, res["one_time_keys"]); diff != "" {
		t.Errorf("claim (-want +got):\n%s", diff)
	}
	if failures, _ := res["failures"].(map[string]any); len(failures) != 1 || failures["down.test"] == nil {
		t.Errorf("claim failures: %v", res["failures"])
	}
}

// TestEDUHooks: the handlers that change typing, receipts, presence, to-device messages
// and devices tell the EDU sink, after their change.
func TestEDUHooks(t *testing.T) {
	s := newFedStack(t)
	if got := s.sink.take(); !cmp.Equal(got, []string{`devices @alice:localhost ["A1"]`}) {
		t.Errorf("registration: %v", got)
	}
	_, room := s.do(t, "POST", "/_matrix/client/v3/createRoom", `{}`)
	roomID, _ := room["room_id"].(string)
	_, sent := s.do(t, "PUT", "/_matrix/client/v3/rooms/"+roomID+"/send/m.room.message/t1", `{"msgtype":"m.text","body":"hi"}`)
	eventID, _ := sent["event_id"].(string)
	steps := []struct {
		method, path, body string
		want               []string
	}{
		{"PUT", "/_matrix/client/v3/rooms/" + roomID + "/typing/@alice:localhost", `{"typing":true,"timeout":1000}`,
			[]string{"typing @alice:localhost on"}},
		{"POST", "/_matrix/client/v3/rooms/" + roomID + "/receipt/m.read/" + eventID, `{}`,
			[]string{"receipt @alice:localhost m.read"}},
		{"POST", "/_matrix/client/v3/rooms/" + roomID + "/receipt/m.read.private/" + eventID, `{}`, nil},
		// Presence goes out from the presence service, which publishes every change
		// (internal/presence's TestPublisher), not from the handler.
		{"PUT", "/_matrix/client/v3/presence/@alice:localhost/status", `{"presence":"unavailable"}`, nil},
		{"PUT", "/_matrix/client/v3/sendToDevice/m.test/txn1", `{"messages":{"@bob:remote.test":{"B1":{"a":1}}}}`,
			[]string{`to-device @alice:localhost m.test ["@bob:remote.test"]`, "to-device woken"}},
		{"PUT", "/_matrix/client/v3/sendToDevice/m.test/txn1", `{"messages":{"@bob:remote.test":{"B1":{"a":1}}}}`, nil}, // retried
		{"POST", "/_matrix/client/v3/logout", `{}`, []string{`devices @alice:localhost ["A1"]`}},
	}
	for _, st := range steps {
		code, res := s.do(t, st.method, st.path, st.body)
		if code != 200 {
			t.Fatalf("%s %s: %d %v", st.method, st.path, code, res)
		}
		if diff := cmp.Diff(st.want, s.sink.take()); diff != "" {
			t.Errorf("%s %s: sink calls (-want +got):\n%s", st.method, st.path, diff)
		}
	}
}
