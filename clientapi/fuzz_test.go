package clientapi_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

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

// stack is an in-process client API on a temporary SQLite database.
type stack struct {
	handler http.Handler
	token   string
	roomID  string
}

func newStack(t testing.TB, configure ...func(*config.Config)) *stack {
	t.Helper()
	ctx := context.Background()
	cfg := config.Default()
	cfg.ServerName = "localhost"
	cfg.DataDir = t.TempDir()
	cfg.Registration.Mode = config.RegistrationOpen
	for _, f := range configure {
		f(&cfg)
	}
	db, err := storage.Open(ctx, "sqlite:"+filepath.Join(cfg.DataDir, "fuzz.db"), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	_, key, _ := ed25519.GenerateKey(nil)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rooms := roomserver.New(roomserver.Config{ServerName: "localhost", KeyID: "ed25519:fuzz", PrivateKey: key, DefaultVersion: "12"}, db, nil, log)
	api := clientapi.New(&cfg, db, rooms, nil, typing.New(rooms, nil, log), presence.New(presence.Config{}, db, nil, log), log)
	router := mux.NewRouter().SkipClean(true).UseEncodedPath()
	api.Register(router)
	router.NotFoundHandler = httputil.NotFoundHandler()
	s := &stack{handler: httputil.Recover(log, httputil.Limits(cfg.Limits.MaxRequestBytes, router))}
	reg := s.do(t, "POST", "/_matrix/client/v3/register", `{"username":"fuzzer","password":"fuzz-password","auth":{"type":"m.login.dummy"}}`)
	s.token = reg["access_token"].(string)
	s.roomID = s.do(t, "POST", "/_matrix/client/v3/createRoom", `{}`)["room_id"].(string)
	return s
}

func (s *stack) request(method, path, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	rec := httptest.NewRecorder()
	s.handler.ServeHTTP(rec, req)
	return rec
}

func (s *stack) do(t testing.TB, method, path, body string) map[string]any {
	t.Helper()
	rec := s.request(method, path, body)
	if rec.Code != 200 {
		t.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body)
	}
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return out
}

// badJSONSeeds are bodies that canonical JSON (appendices.md, "Canonical JSON") or JSON itself
// forbids: floats, exponents, negative zero, integers beyond ±(2^53-1), invalid UTF-8 and deep
// nesting. Each must be refused with a 4xx.
var badJSONSeeds = []string{
	`{"n":1.5}`, `{"n":1e2}`, `{"n":1E400}`, `{"n":-0}`, `{"n":0.0}`, `{"n":9007199254740992}`,
	`{"n":-9007199254740992}`, `{"n":[1,2,{"m":2.25}]}`, `{"n":123456789012345678901234567890}`,
	"{\"body\":\"\xff\xfe\"}", "{\"\xc3\x28\":1}", "{\"body\":\"\xed\xa0\x80\"}",
	strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000),
	`{"a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + "}",
	`{"a":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + "}",
}

// checkClientError asserts that a response is a success or a well-formed client error, never
// a server error, and that nothing invalid was accepted: invalid UTF-8 is never stored.
func checkClientError(t *testing.T, rec *httptest.ResponseRecorder, body []byte) {
	if rec.Code >= 500 {
		t.Fatalf("status %d for body %.200q: %s", rec.Code, body, rec.Body)
	}
	if rec.Code < 300 && !utf8.Valid(body) {
		t.Fatalf("status %d for a body that is not UTF-8 %.200q: %s", rec.Code, body, rec.Body)
	}
	if rec.Code != 200 {
		var e struct {
			ErrCode string `json:"errcode"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || !strings.HasPrefix(e.ErrCode, "M_") {
			t.Fatalf("status %d without a Matrix errcode for body %.200q: %s", rec.Code, body, rec.Body)
		}
	}
}

func FuzzCreateRoom(f *testing.F) {
	for _, seed := range []string{
		`{}`, `[]`, `{"name":5}`, `{"invite":"x"}`, `{"preset":"public_chat","room_alias_name":"a"}`,
		`{"room_version":"1"}`, `{"room_version":"99"}`, `{"initial_state":[{"type":"m.room.topic","content":{"topic":1}}]}`,
		`{"power_level_content_override":{"users":{"@a:b":"x"}}}`, `{"creation_content":{"m.federate":false}}`, `nul`, ``,
		`{"initial_state":[{"type":"m.room.topic","content":{"n":1.5}}]}`,
		`{"power_level_content_override":{"users_default":9007199254740992}}`,
		`{"power_level_content_override":{"ban":1e2}}`, `{"creation_content":{"n":-0}}`,
		"{\"name\":\"\xff\xfe\"}", `{"topic":"\ud800"}`,
	} {
		f.Add([]byte(seed))
	}
	for _, seed := range badJSONSeeds {
		f.Add([]byte(seed))
	}
	s := newStack(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := s.request("POST", "/_matrix/client/v3/createRoom", string(body))
		checkClientError(t, rec, body)
	})
}

func FuzzSend(f *testing.F) {
	for _, seed := range []string{
		`{"msgtype":"m.text","body":"hi"}`, `[]`, `"x"`, `{"body":{"nested":[1,2,3]}}`, `{`, strings.Repeat(`{"a":`, 50),
	} {
		f.Add([]byte(seed))
	}
	for _, seed := range badJSONSeeds {
		f.Add([]byte(seed))
	}
	s := newStack(f)
	n := 0
	f.Fuzz(func(t *testing.T, body []byte) {
		n++
		path := "/_matrix/client/v3/rooms/" + s.roomID + "/send/m.room.message/fuzz" + string(rune('a'+n%26)) + strings.Repeat("x", n%7)
		rec := s.request("PUT", path, string(body))
		checkClientError(t, rec, body)
	})
}

// TestMalformedBodies checks the spec's errcodes for the common malformed bodies.
func TestMalformedBodies(t *testing.T) {
	s := newStack(t)
	cases := []struct {
		body   string
		status int
		code   string
	}{
		{`{not json`, 400, "M_NOT_JSON"},
		{``, 400, "M_NOT_JSON"},
		{`[1,2]`, 400, "M_BAD_JSON"},
		{`{"name": 5}`, 400, "M_BAD_JSON"},
		{`{"invite": "not-a-list"}`, 400, "M_BAD_JSON"},
		{`{"room_version": "999"}`, 400, string(spec.ErrorUnsupportedRoomVersion)},
		{`{"x":"` + strings.Repeat("a", 2<<20) + `"}`, 413, "M_TOO_LARGE"},
	}
	for _, c := range cases {
		rec := s.request("POST", "/_matrix/client/v3/createRoom", c.body)
		var e struct {
			ErrCode string `json:"errcode"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &e)
		if rec.Code != c.status || e.ErrCode != c.code {
			t.Errorf("body %.40q: got %d %s, want %d %s", c.body, rec.Code, e.ErrCode, c.status, c.code)
		}
	}
	big := bytes.Repeat([]byte("a"), 70000)
	rec := s.request("PUT", "/_matrix/client/v3/rooms/"+s.roomID+"/send/m.room.message/big", `{"body":"`+string(big)+`"}`)
	if rec.Code != 413 {
		t.Errorf("oversized event: got %d %s, want 413", rec.Code, rec.Body)
	}
}
