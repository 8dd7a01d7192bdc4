package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
)

// rtcTransportsYAML is the rtc section of the MatrixRTC tests' servers: a LiveKit SFU
// behind its JWT service.
const rtcTransportsYAML = "transports:\n    - type: livekit\n      livekit_service_url: \"https://livekit-jwt.example.org\""

// startRTCServer starts a server with a TLS federation listener (the LiveKit JWT service
// checks OpenID tokens there), a public base URL and one LiveKit transport.
func startRTCServer(t *testing.T) (*Server, string, *testCA) {
	t.Helper()
	ca := newTestCA(t)
	fedAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := StartServer(t, WithFederation(fedAddr))
	s.Stop()
	useTestCA(t, s, ca)
	editConfig(t, s, "  transports: []", "  "+rtcTransportsYAML)
	editConfig(t, s, "public_base_url: \"\"", "public_base_url: \""+s.URL+"\"")
	s.Start()
	return s, fedAddr, ca
}

// userInfo asks the federation listener at fedAddr who an OpenID token belongs to, as the
// LiveKit JWT service does: a plain HTTPS GET, without X-Matrix.
func userInfo(t *testing.T, client *http.Client, fedAddr, token string) Resp {
	t.Helper()
	u := "https://" + fedAddr + "/_matrix/federation/v1/openid/userinfo"
	if token != "" {
		u += "?access_token=" + url.QueryEscape(token)
	}
	resp, err := client.Get(u)
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := Resp{Status: resp.StatusCode, Raw: raw}
	_ = json.Unmarshal(raw, &r.Body)
	return r
}

// TestOpenIDUserInfo requests an OpenID token and verifies it through the federation
// listener as the LiveKit JWT service of MatrixRTC would.
func TestOpenIDUserInfo(t *testing.T) {
	s, fedAddr, ca := startRTCServer(t)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	client := fedHTTPClient(ca)

	r := alice.Do("POST", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/openid/request_token", map[string]any{})
	expectOK(t, r, "request_token")
	token := str(r.Body, "access_token")
	if token == "" || str(r.Body, "token_type") != "Bearer" || str(r.Body, "matrix_server_name") != s.Name {
		t.Fatalf("request_token: %s", r.Raw)
	}
	if exp, _ := r.Body["expires_in"].(float64); exp <= 0 {
		t.Errorf("expires_in = %v, want a positive number of seconds", r.Body["expires_in"])
	}

	info := userInfo(t, client, fedAddr, token)
	expectOK(t, info, "userinfo")
	if str(info.Body, "sub") != alice.UserID {
		t.Errorf("userinfo sub = %q, want %q", str(info.Body, "sub"), alice.UserID)
	}
	// The token proves who alice is to others; it is not an access token of the client API.
	expectErr(t, s.Do(t, token, "GET", "/_matrix/client/v3/account/whoami", nil), "whoami with an OpenID token", 401, "M_UNKNOWN_TOKEN")

	expectErr(t, userInfo(t, client, fedAddr, "not-a-token"), "userinfo with an unknown token", 401, "M_UNKNOWN_TOKEN")
	expectErr(t, userInfo(t, client, fedAddr, alice.Token), "userinfo with a client access token", 401, "M_UNKNOWN_TOKEN")
	expectErr(t, userInfo(t, client, fedAddr, ""), "userinfo without a token", 401, "M_MISSING_TOKEN", "M_UNKNOWN_TOKEN")

	expectErr(t, bob.Do("POST", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/openid/request_token", map[string]any{}),
		"request_token for another user", 403, "M_FORBIDDEN")
	expectErr(t, anon(t, s, "POST", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/openid/request_token", map[string]any{}),
		"request_token without an access token", 401, "M_MISSING_TOKEN")
	expectErr(t, alice.Do("POST", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/openid/request_token", "[]"),
		"request_token with a body that is not an object", 400, "M_BAD_JSON", "M_NOT_JSON")

	// Tokens survive a restart: they are in the database.
	s.Kill()
	s.Start()
	info = userInfo(t, client, fedAddr, token)
	if info.Status != 200 || str(info.Body, "sub") != alice.UserID {
		t.Errorf("userinfo after a restart: %d %s", info.Status, info.Raw)
	}
}

// TestRTCTransports reads the configured transports from MSC4143's endpoint, its unstable
// path and the older .well-known form.
func TestRTCTransports(t *testing.T) {
	s, _, _ := startRTCServer(t)
	alice := s.Register(t, "alice")
	for _, path := range []string{"/_matrix/client/v1/rtc/transports", "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports"} {
		r := alice.Do("GET", path, nil)
		expectOK(t, r, path)
		for _, key := range []string{"transports", "rtc_transports"} {
			ts := list(r.Body, key)
			if len(ts) != 1 || str(ts[0], "type") != "livekit" || str(ts[0], "livekit_service_url") != "https://livekit-jwt.example.org" {
				t.Errorf("%s %s: %s", path, key, r.Raw)
			}
		}
		expectErr(t, anon(t, s, "GET", path, nil), path+" without an access token", 401, "M_MISSING_TOKEN")
	}
	wk := anon(t, s, "GET", "/.well-known/matrix/client", nil)
	expectOK(t, wk, "well-known")
	foci := list(wk.Body, "org.matrix.msc4143.rtc_foci")
	if len(foci) != 1 || str(foci[0], "livekit_service_url") != "https://livekit-jwt.example.org" {
		t.Errorf("well-known rtc_foci: %s", wk.Raw)
	}
	v := anon(t, s, "GET", "/_matrix/client/versions", nil)
	if obj(v.Body, "unstable_features")["org.matrix.msc4143"] != true {
		t.Errorf("/versions does not advertise org.matrix.msc4143: %s", v.Raw)
	}
}

// TestRTCTransportsNone checks that a server without transports answers an empty list.
func TestRTCTransportsNone(t *testing.T) {
	s := StartServer(t)
	alice := s.Register(t, "alice")
	r := alice.Do("GET", "/_matrix/client/v1/rtc/transports", nil)
	expectOK(t, r, "transports")
	if ts, ok := r.Body["rtc_transports"].([]any); !ok || len(ts) != 0 {
		t.Errorf("transports without configuration: %s", r.Raw)
	}
}
