package federationapi

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// TestServerKeys: our key response passes gomatrixserverlib's checks, is self-signed and
// valid for KeyValidity.
func TestServerKeys(t *testing.T) {
	ts := newTestServer(t)
	w := httptest.NewRecorder()
	ts.handler.ServeHTTP(w, httptest.NewRequest("GET", "/_matrix/key/v2/server", nil))
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	var keys gomatrixserverlib.ServerKeys
	if err := json.Unmarshal(w.Body.Bytes(), &keys); err != nil {
		t.Fatal(err)
	}
	checks, verified := gomatrixserverlib.CheckKeys(ourName, ts.now, keys)
	if !checks.AllChecksOK || !bytes.Equal(verified[ourKeyID], ts.us.public()) {
		t.Fatalf("checks %+v, keys %v", checks, verified)
	}
	if err := gomatrixserverlib.VerifyJSON(string(ourName), ourKeyID, ts.us.public(), keys.Raw); err != nil {
		t.Errorf("signature: %v", err)
	}
	if want := spec.AsTimestamp(ts.now.Add(24 * time.Hour)); keys.ValidUntilTS != want {
		t.Errorf("valid_until_ts %d, want %d", keys.ValidUntilTS, want)
	}
	if !bytes.Contains(keys.Raw, []byte(`"old_verify_keys":{}`)) {
		t.Errorf("old_verify_keys missing: %s", keys.Raw)
	}
}

// notaryResponses decodes server_keys and checks that each response is signed by its own
// server with wantKey and by us.
func notaryResponses(t *testing.T, ts *testServer, body []byte, server spec.ServerName, keyID gomatrixserverlib.KeyID, wantKey []byte) []gomatrixserverlib.ServerKeys {
	t.Helper()
	var resp struct {
		ServerKeys []gomatrixserverlib.ServerKeys `json:"server_keys"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	for _, k := range resp.ServerKeys {
		if k.ServerName != server {
			t.Errorf("response for %s, want %s", k.ServerName, server)
		}
		if err := gomatrixserverlib.VerifyJSON(string(server), keyID, wantKey, k.Raw); err != nil {
			t.Errorf("not signed by %s: %v", server, err)
		}
		if err := gomatrixserverlib.VerifyJSON(string(ourName), ourKeyID, ts.us.public(), k.Raw); err != nil {
			t.Errorf("not signed by the notary: %v", err)
		}
	}
	return resp.ServerKeys
}

func TestNotary(t *testing.T) {
	ts := newTestServer(t)
	remote := newIdentity(t, "remote.test", "ed25519:r1")
	ts.cacheKeys(t, remote.keys(t, ts.now.Add(time.Hour)))
	get := func(path string) []byte {
		w := httptest.NewRecorder()
		ts.handler.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != 200 {
			t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
		}
		return w.Body.Bytes()
	}
	post := func(body string) []byte {
		w := httptest.NewRecorder()
		ts.handler.ServeHTTP(w, httptest.NewRequest("POST", "/_matrix/key/v2/query", bytes.NewBufferString(body)))
		if w.Code != 200 {
			t.Fatalf("POST %s: %d %s", body, w.Code, w.Body)
		}
		return w.Body.Bytes()
	}

	// Our own keys.
	if got := notaryResponses(t, ts, get("/_matrix/key/v2/query/lattice.test"), ourName, ourKeyID, ts.us.public()); len(got) != 1 {
		t.Fatalf("own keys: %d responses", len(got))
	}
	// A cached response that is valid long enough: no fetch.
	got := notaryResponses(t, ts, get("/_matrix/key/v2/query/remote.test"), remote.name, remote.keyID, remote.public())
	if len(got) != 1 || ts.fake.calls != 0 {
		t.Fatalf("cached remote keys: %d responses, %d fetches", len(got), ts.fake.calls)
	}
	// Asked for keys valid beyond the cached response: fetched afresh, and cached.
	ts.fake.set(remote.keys(t, ts.now.Add(3*time.Hour)))
	later := ts.now.Add(2 * time.Hour).UnixMilli()
	body := post(`{"server_keys":{"remote.test":{"ed25519:r1":{"minimum_valid_until_ts":` + jsonInt(later) + `}}}}`)
	got = notaryResponses(t, ts, body, remote.name, remote.keyID, remote.public())
	if len(got) != 1 || got[0].ValidUntilTS != spec.AsTimestamp(ts.now.Add(3*time.Hour)) || ts.fake.calls != 1 {
		t.Fatalf("refetched keys: %+v, %d fetches", got, ts.fake.calls)
	}
	cached := notaryResponses(t, ts, get("/_matrix/key/v2/query/remote.test?minimum_valid_until_ts="+jsonInt(later)), remote.name, remote.keyID, remote.public())
	if len(cached) != 1 || cached[0].ValidUntilTS != got[0].ValidUntilTS || ts.fake.calls != 1 {
		t.Fatalf("the fresh response was not cached: %+v, %d fetches", cached, ts.fake.calls)
	}
	// The server is gone: a stale cached response beats none.
	ts.fake.keys = nil
	stale := notaryResponses(t, ts, get("/_matrix/key/v2/query/remote.test?minimum_valid_until_ts="+jsonInt(ts.now.Add(10*time.Hour).UnixMilli())), remote.name, remote.keyID, remote.public())
	if len(stale) != 1 {
		t.Fatalf("stale cached keys: %d responses", len(stale))
	}
	// Unknown and unreachable: an empty list. No servers: an empty list.
	if got := notaryResponses(t, ts, post(`{"server_keys":{"gone.test":{}}}`), "gone.test", "", nil); len(got) != 0 {
		t.Errorf("unreachable server: %d responses", len(got))
	}
	if b := post(`{"server_keys":{}}`); !bytes.Contains(b, []byte(`"server_keys":[]`)) {
		t.Errorf("no servers: %s", b)
	}
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
