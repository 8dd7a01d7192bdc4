package federationapi

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/netguard"
	"github.com/lattice-chat/lattice/storage"
)

const (
	ourName  = spec.ServerName("lattice.test")
	ourKeyID = gomatrixserverlib.KeyID("ed25519:ours")
)

// identity is a server name with a signing key.
type identity struct {
	name  spec.ServerName
	keyID gomatrixserverlib.KeyID
	priv  ed25519.PrivateKey
}

func newIdentity(t *testing.T, name spec.ServerName, keyID gomatrixserverlib.KeyID) identity {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return identity{name: name, keyID: keyID, priv: priv}
}

func (id identity) public() ed25519.PublicKey { return id.priv.Public().(ed25519.PublicKey) }

// keys returns id's signed key response, valid until validUntil.
func (id identity) keys(t *testing.T, validUntil time.Time) gomatrixserverlib.ServerKeys {
	t.Helper()
	js, err := json.Marshal(gomatrixserverlib.ServerKeyFields{
		ServerName:    id.name,
		VerifyKeys:    map[gomatrixserverlib.KeyID]gomatrixserverlib.VerifyKey{id.keyID: {Key: spec.Base64Bytes(id.public())}},
		OldVerifyKeys: map[gomatrixserverlib.KeyID]gomatrixserverlib.OldVerifyKey{},
		ValidUntilTS:  spec.AsTimestamp(validUntil),
	})
	if err != nil {
		t.Fatal(err)
	}
	signed, err := gomatrixserverlib.SignJSON(string(id.name), id.keyID, id.priv, js)
	if err != nil {
		t.Fatal(err)
	}
	var keys gomatrixserverlib.ServerKeys
	if err := json.Unmarshal(signed, &keys); err != nil {
		t.Fatal(err)
	}
	return keys
}

// fakeKeyClient serves server keys from memory instead of the network.
type fakeKeyClient struct {
	mu    sync.Mutex
	keys  map[spec.ServerName]gomatrixserverlib.ServerKeys // guarded by mu
	calls int                                              // guarded by mu
}

func (f *fakeKeyClient) set(k gomatrixserverlib.ServerKeys) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys[k.ServerName] = k
}

func (f *fakeKeyClient) GetServerKeys(_ context.Context, server spec.ServerName) (gomatrixserverlib.ServerKeys, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	k, ok := f.keys[server]
	if !ok {
		return k, errors.New("unreachable")
	}
	return k, nil
}

func (f *fakeKeyClient) LookupServerKeys(context.Context, spec.ServerName, map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp) ([]gomatrixserverlib.ServerKeys, error) {
	return nil, errors.New("unreachable")
}

type testServer struct {
	*Server
	handler http.Handler
	db      *storage.DB
	fake    *fakeKeyClient
	now     time.Time
	us      identity
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "lattice.db"), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	us := newIdentity(t, ourName, ourKeyID)
	now := time.Now().Truncate(time.Millisecond)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(Config{ServerName: ourName, KeyID: ourKeyID, PrivateKey: us.priv, KeyValidity: 24 * time.Hour,
		VerifyTLS: true, Guard: loopbackGuard(t), Version: "test", Now: func() time.Time { return now }}, db, log)
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeKeyClient{keys: map[spec.ServerName]gomatrixserverlib.ServerKeys{}}
	s.fetcher.client = fake
	return &testServer{Server: s, handler: s.Handler(1 << 20), db: db, fake: fake, now: now, us: us}
}

// do sends r through the real router and decodes the JSON response.
func (ts *testServer) do(t *testing.T, r *http.Request) (int, map[string]any) {
	t.Helper()
	w := httptest.NewRecorder()
	ts.handler.ServeHTTP(w, r)
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("%s %s: response is not JSON: %q", r.Method, r.URL, w.Body.String())
	}
	return w.Code, body
}

// signedRequest returns a request from id to destination with an X-Matrix header over
// method, uri and content (nil for none).
func signedRequest(t *testing.T, id identity, destination spec.ServerName, method, uri string, content any) *http.Request {
	t.Helper()
	fr := fclient.NewFederationRequest(method, id.name, destination, uri)
	var body io.Reader
	if content != nil {
		if err := fr.SetContent(content); err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(fr.Content())
	}
	if err := fr.Sign(id.name, id.keyID, id.priv); err != nil {
		t.Fatal(err)
	}
	signed, err := fr.HTTPRequest()
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(method, uri, body)
	r.Header.Set("Authorization", signed.Header.Get("Authorization"))
	if content != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	return r
}

// cacheKeys stores id's key response in the key cache as if fetched earlier.
func (ts *testServer) cacheKeys(t *testing.T, keys gomatrixserverlib.ServerKeys) {
	t.Helper()
	if err := ts.keys.StoreServerKeys(context.Background(), keys); err != nil {
		t.Fatal(err)
	}
}

func TestVersion(t *testing.T) {
	ts := newTestServer(t)
	code, body := ts.do(t, httptest.NewRequest("GET", "/_matrix/federation/v1/version", nil))
	server, _ := body["server"].(map[string]any)
	if code != 200 || server["name"] != "Lattice" || server["version"] != "test" {
		t.Fatalf("version: %d %v", code, body)
	}
}

// loopbackGuard is the default outbound policy with loopback allowed: the test servers and
// origins listen on 127.0.0.1.
func loopbackGuard(t testing.TB) *netguard.Policy {
	t.Helper()
	g, err := netguard.New(netguard.DefaultBlocked, []string{"127.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	return g
}
