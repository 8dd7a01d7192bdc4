package e2e

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// The OAuth 2.0 API (Client-Server API, "OAuth 2.0 API") with Lattice as its own
// authorization server, driven over HTTP as a client and a browser would.

func TestOAuthMetadata(t *testing.T) {
	s := StartServer(t)
	// The same document at the spec's path, MSC2965's, and below the issuer (OpenID Connect
	// discovery, which matrix-js-sdk's token refresher reads; RFC 8414's well-known path).
	for _, path := range []string{"/_matrix/client/v1/auth_metadata", "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata",
		"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		r := s.Do(t, "", "GET", path, nil)
		if r.Status != 200 {
			t.Fatalf("%s: %d %s", path, r.Status, r.Raw)
		}
		m := r.Body
		if str(m, "issuer") != s.URL+"/" {
			t.Errorf("issuer %q", str(m, "issuer"))
		}
		for _, k := range []string{"authorization_endpoint", "token_endpoint", "registration_endpoint", "revocation_endpoint", "device_authorization_endpoint", "account_management_uri"} {
			if !strings.HasPrefix(str(m, k), s.URL+"/_lattice/") {
				t.Errorf("%s = %q", k, str(m, k))
			}
		}
		has := func(k string, want ...string) {
			var got []string
			for _, v := range m[k].([]any) {
				got = append(got, v.(string))
			}
			for _, w := range want {
				if !slices.Contains(got, w) {
					t.Errorf("%s %v lacks %s", k, got, w)
				}
			}
		}
		has("response_types_supported", "code")
		has("grant_types_supported", "authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code")
		has("response_modes_supported", "query", "fragment")
		has("code_challenge_methods_supported", "S256")
		has("prompt_values_supported", "create")
		has("account_management_actions_supported", "org.matrix.profile", "org.matrix.devices_list", "org.matrix.device_view",
			"org.matrix.device_delete", "org.matrix.cross_signing_reset", "org.matrix.sessions_list", "org.matrix.session_view", "org.matrix.session_end")
		if slices.Contains(m["code_challenge_methods_supported"].([]any), any("plain")) {
			t.Error("plain PKCE advertised")
		}
	}
}

func TestOAuthClientRegistration(t *testing.T) {
	s := StartServer(t)
	base := func(kv ...any) map[string]any {
		m := map[string]any{"client_uri": "https://example.com/", "redirect_uris": []string{"https://example.com/cb"},
			"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"}, "token_endpoint_auth_method": "none"}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		return m
	}
	native := func(uris ...string) map[string]any { return base("application_type", "native", "redirect_uris", uris) }
	for _, tc := range []struct {
		name string
		md   map[string]any
		err  string // "" for 201
	}{
		{"web client", base(), ""},
		{"web subdomain with query", base("redirect_uris", []string{"https://app.example.com/callback", "https://example.com:5173/?query=value"}), ""},
		{"localised metadata", base("client_name", "Mailbox", "client_name#fr", "Boîte", "tos_uri", "https://example.com/tos", "tos_uri#fr", "https://example.com/fr/tos",
			"logo_uri", "https://example.com/logo.png", "policy_uri", "https://example.com/policy"), ""},
		{"unknown grant type ignored", base("grant_types", []string{"authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:token-exchange"}), ""},
		{"native private-use scheme", native("com.example.app:/callback", "com.example:/", "com.example:callback"), ""},
		{"native loopback", native("http://localhost/callback", "http://127.0.0.1/callback", "http://[::1]/callback"), ""},
		{"native claimed https", native("https://example.com/native"), ""},
		{"device grant only", base("grant_types", []string{"urn:ietf:params:oauth:grant-type:device_code", "refresh_token"}, "response_types", []string{}, "redirect_uris", nil), ""},

		{"no client_uri", base("client_uri", nil), "invalid_client_metadata"},
		{"http client_uri", base("client_uri", "http://example.com/"), "invalid_client_metadata"},
		{"client_uri with user", base("client_uri", "https://u:p@example.com/"), "invalid_client_metadata"},
		{"logo on other host", base("logo_uri", "https://evil.com/logo.png"), "invalid_client_metadata"},
		{"http tos", base("tos_uri", "http://example.com/tos"), "invalid_client_metadata"},
		{"localised policy on other host", base("policy_uri#fr", "https://evil.com/p"), "invalid_client_metadata"},
		{"secret auth method", base("token_endpoint_auth_method", "client_secret_basic"), "invalid_client_metadata"},
		{"bad application type", base("application_type", "desktop"), "invalid_client_metadata"},
		{"no redirect uris", base("redirect_uris", nil), "invalid_redirect_uri"},
		{"web redirect fragment", base("redirect_uris", []string{"https://example.com/callback#fragment"}), "invalid_redirect_uri"},
		{"web redirect http", base("redirect_uris", []string{"http://example.com/callback"}), "invalid_redirect_uri"},
		{"web redirect localhost", base("redirect_uris", []string{"http://localhost/"}), "invalid_redirect_uri"},
		{"web redirect other host", base("redirect_uris", []string{"https://app.com/callback"}), "invalid_redirect_uri"},
		{"web redirect user", base("redirect_uris", []string{"https://u@example.com/callback"}), "invalid_redirect_uri"},
		{"native scheme not reversed", native("example:/callback"), "invalid_redirect_uri"},
		{"native scheme with authority", native("com.example.app://callback"), "invalid_redirect_uri"},
		{"native https localhost", native("https://localhost/callback"), "invalid_redirect_uri"},
		{"native loopback with port", native("http://localhost:1234/callback"), "invalid_redirect_uri"},
		{"native http other host", native("http://example.com/callback"), "invalid_redirect_uri"},
	} {
		r := registerOAuthClient(t, s, tc.md)
		if tc.err == "" {
			if r.Status != 201 || str(r.Body, "client_id") == "" {
				t.Errorf("%s: want 201, got %d %s", tc.name, r.Status, r.Raw)
			}
			continue
		}
		if r.Status != 400 || str(r.Body, "error") != tc.err {
			t.Errorf("%s: want 400 %s, got %d %s", tc.name, tc.err, r.Status, r.Raw)
		}
	}
	// The answer lists the registered metadata: unknown grant types dropped, localised kept.
	r := registerOAuthClient(t, s, base("client_name#fr", "Boîte", "grant_types", []string{"authorization_code", "refresh_token", "urn:x"}))
	if r.Body["client_name#fr"] != "Boîte" || len(r.Body["grant_types"].([]any)) != 2 || str(r.Body, "application_type") != "web" {
		t.Errorf("registered metadata: %s", r.Raw)
	}
	if r := s.Do(t, "", "POST", "/_lattice/oauth2/register", "not json"); r.Status != 400 || str(r.Body, "error") != "invalid_client_metadata" {
		t.Errorf("not JSON: %d %s", r.Status, r.Raw)
	}
}

// TestOAuthCodeFlow goes through the authorization code grant with PKCE, uses the token on
// the Client-Server API, refreshes with rotation, detects a replayed refresh token and revokes.
func TestOAuthCodeFlow(t *testing.T) {
	s := StartServer(t)
	alice := s.Register(t, "alice")
	clientID := nativeClient(t, s, nil)
	deviceID := randomDeviceID()
	tok := codeFlow(t, s, clientID, deviceID, "alice", "correct horse battery")
	if str(tok.Body, "token_type") != "Bearer" || tok.Body["expires_in"].(float64) != 300 || str(tok.Body, "refresh_token") == "" ||
		!strings.Contains(str(tok.Body, "scope"), "urn:matrix:client:device:"+deviceID) {
		t.Fatalf("token response %s", tok.Raw)
	}
	access, refresh := str(tok.Body, "access_token"), str(tok.Body, "refresh_token")
	who := s.Do(t, access, "GET", "/_matrix/client/v3/account/whoami", nil)
	if who.Status != 200 || str(who.Body, "user_id") != alice.UserID || str(who.Body, "device_id") != deviceID {
		t.Fatalf("whoami: %d %s", who.Status, who.Raw)
	}
	devs := alice.MustDo("GET", "/_matrix/client/v3/devices", nil)
	if !strings.Contains(string(devs.Raw), deviceID) || !strings.Contains(string(devs.Raw), "Test Native") {
		t.Errorf("the device is not listed with the client's name: %s", devs.Raw)
	}

	// Refresh: both tokens rotate; the old access token stops working.
	ref := func(rt string) Resp {
		return tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {clientID}})
	}
	r1 := ref(refresh)
	if r1.Status != 200 || str(r1.Body, "refresh_token") == refresh || str(r1.Body, "access_token") == access {
		t.Fatalf("refresh: %d %s", r1.Status, r1.Raw)
	}
	if r := s.Do(t, access, "GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 401 {
		t.Errorf("old access token after refresh: %d", r.Status)
	}
	// Another client cannot use the refresh token.
	other := nativeClient(t, s, nil)
	expectOAuthErr(t, tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {str(r1.Body, "refresh_token")}, "client_id": {other}}),
		"refresh by another client", 400, "invalid_grant")
	// The new access token is used: the replaced refresh token is revoked...
	access2 := str(r1.Body, "access_token")
	if r := s.Do(t, access2, "GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 200 {
		t.Fatalf("new access token: %d %s", r.Status, r.Raw)
	}
	r2 := ref(str(r1.Body, "refresh_token"))
	if r2.Status != 200 {
		t.Fatalf("second refresh: %d %s", r2.Status, r2.Raw)
	}
	access3 := str(r2.Body, "access_token")
	if r := s.Do(t, access3, "GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 200 {
		t.Fatalf("third access token: %d", r.Status)
	}
	// ...and presenting it again is refused and ends the session (a stolen copy).
	expectOAuthErr(t, ref(str(r1.Body, "refresh_token")), "replayed refresh token", 400, "invalid_grant")
	r := s.Do(t, access3, "GET", "/_matrix/client/v3/account/whoami", nil)
	if r.Status != 401 || r.ErrCode() != "M_UNKNOWN_TOKEN" || r.Body["soft_logout"] != false {
		t.Errorf("session after a replayed refresh token: %d %s", r.Status, r.Raw)
	}
	expectOAuthErr(t, ref(str(r2.Body, "refresh_token")), "refresh of the ended session", 400, "invalid_grant")

	// Revocation with the access token ends the session: device gone, token refused.
	dev2 := randomDeviceID()
	tok2 := codeFlow(t, s, clientID, dev2, "alice", "correct horse battery")
	if r := tokenRequest(t, s, "/_lattice/oauth2/revoke", url.Values{"token": {str(tok2.Body, "access_token")}, "token_type_hint": {"access_token"}, "client_id": {clientID}}); r.Status != 200 {
		t.Fatalf("revoke: %d %s", r.Status, r.Raw)
	}
	if r := s.Do(t, str(tok2.Body, "access_token"), "GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 401 || r.ErrCode() != "M_UNKNOWN_TOKEN" {
		t.Errorf("revoked access token: %d %s", r.Status, r.Raw)
	}
	if strings.Contains(string(alice.MustDo("GET", "/_matrix/client/v3/devices", nil).Raw), dev2) {
		t.Error("the revoked session's device is still listed")
	}
	expectOAuthErr(t, ref(str(tok2.Body, "refresh_token")), "refresh after revocation", 400, "invalid_grant")
	// Revocation with the refresh token, and of an unknown token (200).
	dev3 := randomDeviceID()
	tok3 := codeFlow(t, s, clientID, dev3, "alice", "correct horse battery")
	if r := tokenRequest(t, s, "/_lattice/oauth2/revoke", url.Values{"token": {str(tok3.Body, "refresh_token")}}); r.Status != 200 {
		t.Fatalf("revoke refresh token: %d %s", r.Status, r.Raw)
	}
	if r := s.Do(t, str(tok3.Body, "access_token"), "GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 401 {
		t.Errorf("access token after revoking its refresh token: %d", r.Status)
	}
	if r := tokenRequest(t, s, "/_lattice/oauth2/revoke", url.Values{"token": {"nonsense"}}); r.Status != 200 {
		t.Errorf("revoke unknown token: %d %s", r.Status, r.Raw)
	}
	expectOAuthErr(t, tokenRequest(t, s, "/_lattice/oauth2/revoke", url.Values{}), "revoke without token", 400, "invalid_request")

	// The same device ID again reuses the device of the same user.
	dev4 := randomDeviceID()
	codeFlow(t, s, clientID, dev4, "alice", "correct horse battery")
	tok4 := codeFlow(t, s, clientID, dev4, "alice", "correct horse battery")
	if r := s.Do(t, str(tok4.Body, "access_token"), "GET", "/_matrix/client/v3/account/whoami", nil); str(r.Body, "device_id") != dev4 {
		t.Errorf("reused device: %s", r.Raw)
	}
}

// TestOAuthCodeFlowRegistration registers an account through prompt=create, with the
// fragment response mode and the unstable scope names.
func TestOAuthCodeFlowRegistration(t *testing.T) {
	s := StartServer(t)
	clientID := nativeClient(t, s, nil)
	b := newBrowser(t, s)
	verifier, challenge := pkce()
	dev := randomDeviceID()
	redirect := "org.example.client:/callback"
	p := b.get(authorizeURL(s, clientID, redirect, "openid urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:"+dev, "xyz", challenge,
		url.Values{"prompt": {"create"}, "response_mode": {"fragment"}, "nonce": {"n0nce"}}))
	if !strings.Contains(p.URL, "/_lattice/account/register") {
		t.Fatalf("prompt=create did not show registration: %s", p.URL)
	}
	f := formTo(t, p, "/_lattice/account/register")
	f.Values.Set("username", "Newcomer")
	f.Values.Set("password", "a long password")
	f.Values.Set("password2", "a different one")
	p2 := b.post(f.Action, f.Values)
	if p2.Status != 400 || !strings.Contains(p2.Body, "do not match") {
		t.Fatalf("mismatched passwords: %d", p2.Status)
	}
	f.Values.Set("password2", "a long password")
	p = b.post(f.Action, f.Values)
	if !strings.Contains(p.Body, "Test Native") || !strings.Contains(p.Body, "@newcomer:localhost") {
		t.Fatalf("consent page after registration: %d %s", p.Status, p.Body)
	}
	p = b.consent(p, "allow")
	if !strings.HasPrefix(p.Location, redirect+"#") {
		t.Fatalf("fragment response mode: %s", p.Location)
	}
	code, state := codeFrom(t, p)
	if state != "xyz" {
		t.Errorf("state %q", state)
	}
	tok := tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {redirect}, "client_id": {clientID}, "code_verifier": {verifier}})
	if tok.Status != 200 || !strings.Contains(str(tok.Body, "scope"), "openid") {
		t.Fatalf("exchange: %d %s", tok.Status, tok.Raw)
	}
	// The openid scope brings an ID token signed with a key of jwks_uri.
	claims := verifyIDToken(t, s, str(tok.Body, "id_token"))
	if claims["iss"] != s.URL+"/" || claims["aud"] != clientID || claims["sub"] != "@newcomer:localhost" || claims["nonce"] != "n0nce" {
		t.Errorf("ID token claims %v", claims)
	}
	if r := s.Do(t, str(tok.Body, "access_token"), "GET", "/_matrix/client/v3/account/whoami", nil); str(r.Body, "user_id") != "@newcomer:localhost" || str(r.Body, "device_id") != dev {
		t.Errorf("whoami %s", r.Raw)
	}
	// Denying consent sends access_denied back.
	p = b.get(authorizeURL(s, clientID, redirect, "urn:matrix:client:api:* urn:matrix:client:device:"+randomDeviceID(), "s2", challenge, nil))
	p = b.consent(p, "deny")
	if u, _ := url.Parse(p.Location); u == nil || u.Query().Get("error") != "access_denied" || u.Query().Get("state") != "s2" {
		t.Errorf("deny: %s", p.Location)
	}
	// An account deactivated after the browser signed in gets no new session.
	verifier, challenge = pkce()
	p = b.get(authorizeURL(s, clientID, redirect, "urn:matrix:client:api:* urn:matrix:client:device:"+randomDeviceID(), "s3", challenge, nil))
	code, _ = codeFrom(t, b.consent(p, "allow"))
	me := &Client{t: t, srv: s, UserID: "@newcomer:localhost", Token: str(tok.Body, "access_token")}
	expectOK(t, uiaPassword(me, "POST", "/_matrix/client/v3/account/deactivate", map[string]any{}, "a long password"), "deactivate")
	expectOAuthErr(t, tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {redirect}, "client_id": {clientID}, "code_verifier": {verifier}}), "code of a deactivated account", 400, "invalid_grant")
}

// TestOAuthSecurity covers what an attacker would try.
func TestOAuthSecurity(t *testing.T) {
	s := StartServer(t)
	s.Register(t, "alice")
	clientID := nativeClient(t, s, nil)
	redirect := "http://127.0.0.1:5000/callback"
	scope := "urn:matrix:client:api:* urn:matrix:client:device:" + randomDeviceID()
	b := newBrowser(t, s)
	verifier, challenge := pkce()
	p := b.get(authorizeURL(s, clientID, redirect, scope, "s", challenge, nil))
	p = b.signIn(p, "alice", "correct horse battery")
	consentPage := p
	code, _ := codeFrom(t, b.consent(p, "allow"))
	exchange := func(code, redirect, verifier, client string) Resp {
		return tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {redirect}, "client_id": {client}, "code_verifier": {verifier}})
	}
	// PKCE mismatch: refused, and the code is spent.
	wrong, _ := pkce()
	expectOAuthErr(t, exchange(code, redirect, wrong, clientID), "PKCE mismatch", 400, "invalid_grant")
	expectOAuthErr(t, exchange(code, redirect, verifier, clientID), "code after a failed exchange", 400, "invalid_grant")
	// A code is used once; the redirect URI and client must match.
	newCode := func() (string, string) {
		v, c := pkce()
		p := b.get(authorizeURL(s, clientID, redirect, scope, "s", c, nil))
		code, _ := codeFrom(t, b.consent(p, "allow"))
		return code, v
	}
	code, verifier = newCode()
	if r := exchange(code, redirect, verifier, clientID); r.Status != 200 {
		t.Fatalf("exchange: %d %s", r.Status, r.Raw)
	}
	expectOAuthErr(t, exchange(code, redirect, verifier, clientID), "reused code", 400, "invalid_grant")
	code, verifier = newCode()
	expectOAuthErr(t, exchange(code, "http://127.0.0.1:5001/callback", verifier, clientID), "other redirect_uri", 400, "invalid_grant")
	code, verifier = newCode()
	other := nativeClient(t, s, nil)
	expectOAuthErr(t, exchange(code, redirect, verifier, other), "other client", 400, "invalid_grant")
	expectOAuthErr(t, exchange("x", redirect, verifier, "nosuchclient"), "unknown client", 401, "invalid_client")
	expectOAuthErr(t, tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"password"}, "client_id": {clientID}}), "password grant", 400, "unsupported_grant_type")
	expectOAuthErr(t, tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"client_id": {clientID}}), "no grant type", 400, "invalid_request")
	// An expired code.
	code, verifier = newCode()
	execDB(t, s, `UPDATE oauth_grants SET expires_ts = 1 WHERE kind = 'code'`)
	expectOAuthErr(t, exchange(code, redirect, verifier, clientID), "expired code", 400, "invalid_grant")

	// Unregistered redirect URIs get an error page, never a redirect.
	for _, bad := range []string{"https://evil.example/cb", "http://127.0.0.1:5000/other", "http://evil.example/callback", "org.example.client:/callback#x", "org.example.evil:/callback"} {
		p := b.get(authorizeURL(s, clientID, bad, scope, "s", challenge, nil))
		if p.Status != 400 || p.Location != "" {
			t.Errorf("redirect_uri %s: %d %s", bad, p.Status, p.Location)
		}
	}
	if p := b.get(authorizeURL(s, "nosuchclient", redirect, scope, "s", challenge, nil)); p.Status != 400 || p.Location != "" {
		t.Errorf("unknown client: %d %s", p.Status, p.Location)
	}
	// Bad requests with a good redirect URI go back with an error.
	for what, q := range map[string]url.Values{
		"plain PKCE":        {"code_challenge_method": {"plain"}},
		"no PKCE":           {"code_challenge": {""}},
		"token response":    {"response_type": {"token"}},
		"no device scope":   {"scope": {"urn:matrix:client:api:*"}},
		"two devices":       {"scope": {scope + " urn:matrix:client:device:OTHER1234"}},
		"bad response_mode": {"response_mode": {"form_post"}},
	} {
		p := b.get(authorizeURL(s, clientID, redirect, scope, "s", challenge, q))
		u, _ := url.Parse(p.Location)
		if p.Status != 303 || u == nil || !strings.HasPrefix(p.Location, redirect) || u.Query().Get("error") == "" || u.Query().Get("state") != "s" {
			t.Errorf("%s: %d %s", what, p.Status, p.Location)
		}
	}

	// CSRF: the consent form without its token, with another session's token, or from a
	// browser without the cookie is refused.
	f := formTo(t, consentPage, "/_lattice/oauth2/authorize")
	f.Values.Set("action", "allow")
	noToken := url.Values{}
	for k, v := range f.Values {
		noToken[k] = v
	}
	noToken.Del("csrf")
	if p := b.post(f.Action, noToken); p.Status != 403 || p.Location != "" {
		t.Errorf("consent without CSRF token: %d %s", p.Status, p.Location)
	}
	wrongToken := url.Values{}
	for k, v := range f.Values {
		wrongToken[k] = v
	}
	wrongToken.Set("csrf", "AAAA"+f.Values.Get("csrf")[4:])
	if p := b.post(f.Action, wrongToken); p.Status != 403 {
		t.Errorf("consent with a wrong CSRF token: %d", p.Status)
	}
	if p := newBrowser(t, s).post(f.Action, f.Values); p.Status != 403 || p.Location != "" {
		t.Errorf("consent from another browser: %d %s", p.Status, p.Location)
	}

	// No open redirect after signing in.
	for _, next := range []string{"https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", "/_matrix/client/versions"} {
		b2 := newBrowser(t, s)
		p := b2.get("/_lattice/account/login?next=" + url.QueryEscape(next))
		p = b2.signIn(p, "alice", "correct horse battery")
		if !strings.HasPrefix(p.URL, s.URL+"/_lattice/account/") || p.Location != "" {
			t.Errorf("next=%s led to %s %s", next, p.URL, p.Location)
		}
	}

	// Brute force on the sign-in form is rate limited.
	b3 := newBrowser(t, s)
	login := b3.get("/_lattice/account/login")
	limited := false
	for i := 0; i < 8 && !limited; i++ {
		p := b3.signIn(login, "alice", "wrong password")
		switch p.Status {
		case 403:
		case 429:
			limited = true
		default:
			t.Fatalf("wrong password: %d", p.Status)
		}
	}
	if !limited {
		t.Error("8 wrong passwords in a row were not rate limited")
	}
	if p := b3.signIn(login, "alice", "correct horse battery"); p.Status != 429 {
		t.Errorf("right password while limited: %d", p.Status)
	}
	// The /login API shares the account's limit.
	if r := loginPassword(t, s, "alice", "correct horse battery"); r.Status != 429 {
		t.Errorf("/login while the pages' sign-in is limited: %d", r.Status)
	}
}

// TestOAuthAccountPage ends a session from the account page: its token is refused.
func TestOAuthAccountPage(t *testing.T) {
	s := StartServer(t)
	alice := s.Register(t, "alice")
	clientID := nativeClient(t, s, nil)
	dev := randomDeviceID()
	tok := codeFlow(t, s, clientID, dev, "alice", "correct horse battery")
	b := newBrowser(t, s)
	p := b.get("/_lattice/account/?action=org.matrix.session_view&device_id=" + dev)
	p = b.signIn(p, "alice", "correct horse battery")
	if p.Status != 200 || !strings.Contains(p.Body, dev) || !strings.Contains(p.Body, `aria-current="true"`) || !strings.Contains(p.Body, alice.DeviceID) {
		t.Fatalf("account page: %d %s", p.Status, p.Body)
	}
	var end htmlForm
	for _, f := range forms(t, p.Body) {
		if f.Action == "/_lattice/account/sessions/end" && f.Values.Get("device_id") == dev {
			end = f
		}
	}
	p = b.post(end.Action, end.Values)
	if p.Status != 200 || strings.Contains(p.Body, "<code>"+dev+"</code>") {
		t.Fatalf("after ending the session: %d", p.Status)
	}
	if r := s.Do(t, str(tok.Body, "access_token"), "GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 401 || r.ErrCode() != "M_UNKNOWN_TOKEN" {
		t.Errorf("token of the deleted device: %d %s", r.Status, r.Raw)
	}
	// Display name and password.
	f := formTo(t, p, "/_lattice/account/profile")
	f.Values.Set("displayname", "Alice A.")
	b.post(f.Action, f.Values)
	if r := alice.MustDo("GET", "/_matrix/client/v3/profile/"+alice.UserID+"/displayname", nil); str(r.Body, "displayname") != "Alice A." {
		t.Errorf("display name: %s", r.Raw)
	}
	f = formTo(t, p, "/_lattice/account/password")
	f.Values.Set("current", "correct horse battery")
	f.Values.Set("new", "a new long password")
	if p := b.post(f.Action, f.Values); p.Status != 200 || !strings.Contains(p.Body, "was changed") {
		t.Errorf("password change: %d", p.Status)
	}
	if r := loginPassword(t, s, "alice", "a new long password"); r.Status != 200 {
		t.Errorf("login with the new password: %d", r.Status)
	}
	// Without the CSRF token nothing happens.
	f.Values.Del("csrf")
	if p := b.post(f.Action, f.Values); p.Status != 403 {
		t.Errorf("password change without CSRF token: %d", p.Status)
	}
}

// TestOAuthDeviceGrant completes the device authorization grant while polling.
func TestOAuthDeviceGrant(t *testing.T) {
	s := StartServer(t)
	s.Register(t, "alice")
	clientID := nativeClient(t, s, nil)
	dev := randomDeviceID()
	r := tokenRequest(t, s, "/_lattice/oauth2/device", url.Values{"client_id": {clientID}, "scope": {"urn:matrix:client:api:* urn:matrix:client:device:" + dev}})
	if r.Status != 200 || str(r.Body, "device_code") == "" || len(str(r.Body, "user_code")) != 9 || r.Body["interval"].(float64) != 5 ||
		!strings.HasPrefix(str(r.Body, "verification_uri_complete"), str(r.Body, "verification_uri")+"?user_code=") {
		t.Fatalf("device authorization: %d %s", r.Status, r.Raw)
	}
	poll := func() Resp {
		return tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"},
			"device_code": {str(r.Body, "device_code")}, "client_id": {clientID}})
	}
	expectOAuthErr(t, poll(), "first poll", 400, "authorization_pending")
	expectOAuthErr(t, poll(), "fast poll", 400, "slow_down")

	// The user types the code (lower case, without the dash) after signing in.
	b := newBrowser(t, s)
	p := b.get(str(r.Body, "verification_uri"))
	p = b.signIn(p, "alice", "correct horse battery")
	if !strings.Contains(p.Body, `name="user_code"`) {
		t.Fatalf("code entry page: %d %s", p.Status, p.Body)
	}
	p = b.get("/_lattice/account/device?user_code=" + strings.ToLower(strings.ReplaceAll(str(r.Body, "user_code"), "-", "")))
	if !strings.Contains(p.Body, "Test Native") || !strings.Contains(p.Body, dev) {
		t.Fatalf("device consent: %d %s", p.Status, p.Body)
	}
	p = b.consent(p, "allow")
	if p.Status != 200 || !strings.Contains(p.Body, "now signed in") {
		t.Fatalf("device approval: %d %s", p.Status, p.Body)
	}
	// slow_down raised the interval to 10 s.
	time.Sleep(10500 * time.Millisecond)
	tok := poll()
	if tok.Status != 200 || str(tok.Body, "refresh_token") == "" {
		t.Fatalf("token after approval: %d %s", tok.Status, tok.Raw)
	}
	if w := s.Do(t, str(tok.Body, "access_token"), "GET", "/_matrix/client/v3/account/whoami", nil); str(w.Body, "device_id") != dev {
		t.Errorf("whoami: %s", w.Raw)
	}
	expectOAuthErr(t, poll(), "poll after the tokens were issued", 400, "invalid_grant")

	// Denied, expired, unknown code.
	start := func() Resp {
		return tokenRequest(t, s, "/_lattice/oauth2/device", url.Values{"client_id": {clientID}, "scope": {"urn:matrix:client:api:* urn:matrix:client:device:" + randomDeviceID()}})
	}
	d2 := start()
	p = b.get(str(d2.Body, "verification_uri_complete"))
	b.consent(p, "deny")
	expectOAuthErr(t, tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"},
		"device_code": {str(d2.Body, "device_code")}, "client_id": {clientID}}), "denied", 400, "access_denied")
	d3 := start()
	execDB(t, s, `UPDATE oauth_grants SET expires_ts = 1 WHERE kind = 'device'`)
	expectOAuthErr(t, tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"},
		"device_code": {str(d3.Body, "device_code")}, "client_id": {clientID}}), "expired", 400, "expired_token")
	if p := b.get(str(d3.Body, "verification_uri_complete")); p.Status != 404 {
		t.Errorf("expired code's page: %d", p.Status)
	}
	if p := b.get("/_lattice/account/device?user_code=BCDF-GHJK"); p.Status != 404 || !strings.Contains(p.Body, "unknown or has expired") {
		t.Errorf("unknown code's page: %d", p.Status)
	}
	// A client without the grant type cannot start it.
	web := registerOAuthClient(t, s, map[string]any{"client_uri": "https://example.com/", "redirect_uris": []string{"https://example.com/cb"}})
	expectOAuthErr(t, tokenRequest(t, s, "/_lattice/oauth2/device", url.Values{"client_id": {str(web.Body, "client_id")}, "scope": {"urn:matrix:client:api:* urn:matrix:client:device:ABCDEFGHIJ"}}),
		"device grant of a client without it", 400, "unauthorized_client")
}

// TestRefreshTokensLegacy: /login and /register with refresh_token: true, POST /refresh,
// expiry with soft_logout, and the spec's grace for a lost refresh answer.
func TestRefreshTokensLegacy(t *testing.T) {
	s := StartServer(t)
	setConfig(t, s, `access_token_lifetime: "5m"`, `access_token_lifetime: "2s"`)
	reg := s.Do(t, "", "POST", "/_matrix/client/v3/register", map[string]any{"username": "alice", "password": "correct horse battery",
		"auth": map[string]any{"type": "m.login.dummy"}, "refresh_token": true})
	if reg.Status != 200 || str(reg.Body, "refresh_token") == "" || reg.Body["expires_in_ms"].(float64) != 2000 {
		t.Fatalf("register with refresh_token: %d %s", reg.Status, reg.Raw)
	}
	plain := loginPassword(t, s, "alice", "correct horse battery")
	if _, ok := plain.Body["refresh_token"]; ok || plain.Body["expires_in_ms"] != nil {
		t.Errorf("login without refresh_token got one: %s", plain.Raw)
	}
	login := s.Do(t, "", "POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "correct horse battery", "refresh_token": true})
	if login.Status != 200 || str(login.Body, "refresh_token") == "" || login.Body["expires_in_ms"].(float64) != 2000 {
		t.Fatalf("login with refresh_token: %d %s", login.Status, login.Raw)
	}
	refresh := func(rt string) Resp {
		return s.Do(t, "", "POST", "/_matrix/client/v3/refresh", map[string]any{"refresh_token": rt})
	}
	// Grace: the answer is lost; the same refresh token works again until the new tokens
	// are used, and gives the same tokens.
	r1 := refresh(str(login.Body, "refresh_token"))
	r1b := refresh(str(login.Body, "refresh_token"))
	if r1.Status != 200 || r1b.Status != 200 || str(r1b.Body, "refresh_token") != str(r1.Body, "refresh_token") {
		t.Fatalf("refresh twice before use: %d %d %s", r1.Status, r1b.Status, r1b.Raw)
	}
	if r := s.Do(t, str(r1b.Body, "access_token"), "GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 200 {
		t.Fatalf("refreshed token: %d %s", r.Status, r.Raw)
	}
	// Now used: the old refresh token is refused.
	if r := refresh(str(login.Body, "refresh_token")); r.Status != 401 || r.ErrCode() != "M_UNKNOWN_TOKEN" {
		t.Errorf("old refresh token after the new token was used: %d %s", r.Status, r.Raw)
	}
	// Expiry: soft logout, then refresh works.
	time.Sleep(2200 * time.Millisecond)
	who := s.Do(t, str(reg.Body, "access_token"), "GET", "/_matrix/client/v3/account/whoami", nil)
	if who.Status != 401 || who.ErrCode() != "M_UNKNOWN_TOKEN" || who.Body["soft_logout"] != true {
		t.Fatalf("expired token: %d %s", who.Status, who.Raw)
	}
	if r := s.Do(t, str(plain.Body, "access_token"), "GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 200 {
		t.Errorf("a token without refresh expired: %d", r.Status)
	}
	r2 := refresh(str(reg.Body, "refresh_token"))
	if r2.Status != 200 {
		t.Fatalf("refresh after expiry: %d %s", r2.Status, r2.Raw)
	}
	if r := s.Do(t, str(r2.Body, "access_token"), "GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 200 || str(r.Body, "device_id") != str(reg.Body, "device_id") {
		t.Errorf("the session continues on the same device: %s", r.Raw)
	}
	if r := refresh("nonsense"); r.Status != 401 || r.ErrCode() != "M_UNKNOWN_TOKEN" {
		t.Errorf("unknown refresh token: %d %s", r.Status, r.Raw)
	}
	if r := s.Do(t, "", "POST", "/_matrix/client/v3/refresh", map[string]any{}); r.Status != 400 {
		t.Errorf("no refresh token: %d", r.Status)
	}
	// Logging out ends the refresh token too.
	if r := s.Do(t, str(r2.Body, "access_token"), "POST", "/_matrix/client/v3/logout", map[string]any{}); r.Status != 200 {
		t.Fatalf("logout: %d", r.Status)
	}
	if r := refresh(str(r2.Body, "refresh_token")); r.Status != 401 {
		t.Errorf("refresh after logout: %d", r.Status)
	}
}

// TestOAuthCrossSigningReset: a session of the OAuth 2.0 API replacing its cross-signing keys
// gets the m.oauth stage, whose URL is the account page where the user approves the reset.
func TestOAuthCrossSigningReset(t *testing.T) {
	s := StartServer(t)
	alice := s.Register(t, "alice")
	clientID := nativeClient(t, s, nil)
	tok := codeFlow(t, s, clientID, randomDeviceID(), "alice", "correct horse battery")
	oc := &Client{t: t, srv: s, UserID: alice.UserID, Token: str(tok.Body, "access_token")}
	csKeys := func() map[string]any { return newCrossSigningKeys(t, alice.UserID) }
	const path = "/_matrix/client/v3/keys/device_signing/upload"
	expectOK(t, oc.Do("POST", path, csKeys()), "first upload needs no UIA")
	second := csKeys()
	r := oc.Do("POST", path, second)
	if r.Status != 401 || !strings.Contains(string(r.Raw), `"m.oauth"`) {
		t.Fatalf("replacement by an OAuth session: %d %s", r.Status, r.Raw)
	}
	params := obj(obj(r.Body, "params"), "m.oauth")
	if !strings.HasPrefix(str(params, "url"), s.URL+"/_lattice/account/") || !strings.Contains(str(params, "url"), "action=org.matrix.cross_signing_reset") {
		t.Fatalf("m.oauth url %v", params)
	}
	session := str(r.Body, "session")
	// Not yet approved: the stage is asked again.
	if r := oc.Do("POST", path, withAuth(second, map[string]any{"session": session})); r.Status != 401 {
		t.Fatalf("before approval: %d %s", r.Status, r.Raw)
	}
	b := newBrowser(t, s)
	p := b.signIn(b.get(str(params, "url")), "alice", "correct horse battery")
	f := formTo(t, p, "/_lattice/account/cross_signing_reset")
	if p = b.post(f.Action, f.Values); p.Status != 200 {
		t.Fatalf("approval: %d", p.Status)
	}
	expectOK(t, oc.Do("POST", path, withAuth(second, map[string]any{"session": session})), "replacement after approval")
	// The approval is used up.
	if r := oc.Do("POST", path, withAuth(csKeys(), map[string]any{"session": session})); r.Status != 401 {
		t.Errorf("second replacement on one approval: %d", r.Status)
	}
	// A password session still gets the password stage.
	if r := alice.Do("POST", path, csKeys()); r.Status != 401 || !strings.Contains(string(r.Raw), "m.login.password") {
		t.Errorf("password session: %d %s", r.Status, r.Raw)
	}
}
