package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fixes of an independent review of the OAuth 2.0 server, each driven over HTTP.

// TestOAuthConcurrentRefresh: refreshes sent at the same time with the same refresh token
// (a client retrying before the first answer came back) all succeed with tokens that work,
// and the client can still repeat the refresh with that token afterwards, on both backends.
func TestOAuthConcurrentRefresh(t *testing.T) {
	s := StartServer(t)
	s.Register(t, "alice")
	clientID := nativeClient(t, s, nil)
	tok := codeFlow(t, s, clientID, randomDeviceID(), "alice", "correct horse battery")
	ref := func(rt string) Resp {
		return tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {clientID}})
	}
	rt := str(tok.Body, "refresh_token")
	for trial := 0; trial < 6; trial++ {
		const n = 3
		answers := make([]Resp, n)
		var wg sync.WaitGroup
		for i := range answers {
			wg.Add(1)
			go func() { defer wg.Done(); answers[i] = ref(rt) }()
		}
		wg.Wait()
		for i, a := range answers {
			if a.Status != 200 {
				t.Fatalf("trial %d: concurrent refresh %d: %d %s", trial, i, a.Status, a.Raw)
			}
		}
		// The answer may have been lost: the client repeats the refresh.
		again := ref(rt)
		if again.Status != 200 {
			t.Fatalf("trial %d: refresh repeated after concurrent ones: %d %s", trial, again.Status, again.Raw)
		}
		// Whichever answer the client kept, its tokens work.
		for i, a := range append(answers, again) {
			if r := s.Do(t, str(a.Body, "access_token"), "GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 200 {
				t.Fatalf("trial %d: access token of answer %d: %d %s", trial, i, r.Status, r.Raw)
			}
		}
		rt = str(answers[trial%n].Body, "refresh_token")
		for i, a := range answers {
			if str(a.Body, "refresh_token") != rt {
				t.Fatalf("trial %d: answer %d has another refresh token than answer %d", trial, i, trial%n)
			}
		}
	}
	if r := ref(rt); r.Status != 200 {
		t.Fatalf("refresh after the trials: %d %s", r.Status, r.Raw)
	}
}

// approvedCode signs alice in with a new browser and approves: an authorization code and its
// verifier.
func approvedCode(t *testing.T, s *Server, clientID, deviceID string) (code, verifier string) {
	t.Helper()
	b := newBrowser(t, s)
	verifier, challenge := pkce()
	p := b.get(authorizeURL(s, clientID, "http://127.0.0.1:43123/callback", "urn:matrix:client:api:* urn:matrix:client:device:"+deviceID, "st4te", challenge, nil))
	p = b.signIn(p, "alice", "correct horse battery")
	code, _ = codeFrom(t, b.consent(p, "allow"))
	return code, verifier
}

func exchangeCode(t *testing.T, s *Server, clientID, code, verifier string) Resp {
	return tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {"http://127.0.0.1:43123/callback"}, "client_id": {clientID}, "code_verifier": {verifier}})
}

// TestOAuthCodeReuseRevokes: an authorization code presented a second time is refused and
// ends the session it gave (RFC 6749 section 4.1.2).
func TestOAuthCodeReuseRevokes(t *testing.T) {
	s := StartServer(t)
	s.Register(t, "alice")
	clientID := nativeClient(t, s, nil)
	code, verifier := approvedCode(t, s, clientID, randomDeviceID())
	tok := exchangeCode(t, s, clientID, code, verifier)
	if tok.Status != 200 {
		t.Fatalf("exchange: %d %s", tok.Status, tok.Raw)
	}
	if r := s.Do(t, str(tok.Body, "access_token"), "GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 200 {
		t.Fatalf("whoami: %d %s", r.Status, r.Raw)
	}
	expectOAuthErr(t, exchangeCode(t, s, clientID, code, verifier), "code used again", 400, "invalid_grant")
	if r := s.Do(t, str(tok.Body, "access_token"), "GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 401 {
		t.Errorf("access token of a reused code: %d %s", r.Status, r.Raw)
	}
	expectOAuthErr(t, tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"refresh_token"},
		"refresh_token": {str(tok.Body, "refresh_token")}, "client_id": {clientID}}), "refresh token of a reused code", 400, "invalid_grant")
}

// TestOAuthDeviceCodeExpired: a device code polled after it expired answers expired_token,
// every time, even after other grants were started (RFC 8628 section 3.5).
func TestOAuthDeviceCodeExpired(t *testing.T) {
	s := StartServer(t)
	clientID := nativeClient(t, s, nil)
	start := func() Resp {
		return tokenRequest(t, s, "/_lattice/oauth2/device", url.Values{"client_id": {clientID}, "scope": {"urn:matrix:client:api:* urn:matrix:client:device:" + randomDeviceID()}})
	}
	poll := func(d Resp) Resp {
		return tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"},
			"device_code": {str(d.Body, "device_code")}, "client_id": {clientID}})
	}
	d := start()
	execDB(t, s, fmt.Sprintf(`UPDATE oauth_grants SET expires_ts = %d WHERE kind = 'device'`, time.Now().Add(-time.Minute).UnixMilli()))
	expectOAuthErr(t, poll(d), "expired", 400, "expired_token")
	expectOAuthErr(t, poll(d), "expired, again", 400, "expired_token")
	start()
	expectOAuthErr(t, poll(d), "expired, after another grant started", 400, "expired_token")
}

// signedIn reports whether the browser's authorization request reaches the consent page
// (signed in) rather than the sign-in page.
func signedIn(t *testing.T, b *browser, s *Server, clientID string) bool {
	t.Helper()
	_, challenge := pkce()
	p := b.get(authorizeURL(s, clientID, "http://127.0.0.1:43123/callback", "urn:matrix:client:api:* urn:matrix:client:device:"+randomDeviceID(), "s", challenge, nil))
	return !strings.Contains(p.URL, "/_lattice/account/login")
}

// TestOAuthWebSessionEnds: a browser signed in to the pages can no longer approve a client
// after the user logs out of all devices or changes the password elsewhere; the browser that
// changed the password stays signed in.
func TestOAuthWebSessionEnds(t *testing.T) {
	s := StartServer(t)
	alice := s.Register(t, "alice")
	clientID := nativeClient(t, s, nil)
	signIn := func() *browser {
		b := newBrowser(t, s)
		_, challenge := pkce()
		p := b.get(authorizeURL(s, clientID, "http://127.0.0.1:43123/callback", "urn:matrix:client:api:* urn:matrix:client:device:"+randomDeviceID(), "s", challenge, nil))
		b.signIn(p, "alice", testPassword)
		if !signedIn(t, b, s, clientID) {
			t.Fatal("not signed in")
		}
		return b
	}
	b := signIn()
	alice.MustDo("POST", "/_matrix/client/v3/logout/all", map[string]any{})
	if signedIn(t, b, s, clientID) {
		t.Error("the browser session survived logging out of all devices")
	}
	b = signIn()
	// The password changes on another browser's account page.
	other := signIn()
	p := other.get("/_lattice/account/")
	f := formTo(t, p, "/_lattice/account/password")
	f.Values.Set("current", testPassword)
	f.Values.Set("new", "a brand new secret")
	if p := other.post(f.Action, f.Values); p.Status != 200 {
		t.Fatalf("password form: %d %s", p.Status, p.Body)
	}
	if signedIn(t, b, s, clientID) {
		t.Error("the browser session survived a password change")
	}
	if !signedIn(t, other, s, clientID) {
		t.Error("the browser that changed the password was signed out")
	}
}

// TestOAuthClientLimits: registrations are bounded in size and rate (429 with Retry-After),
// and the clients registered a week ago that hold no session and no grant are deleted,
// while the others stay.
func TestOAuthClientLimits(t *testing.T) {
	s := StartServer(t)
	s.Register(t, "alice")
	md := func(name string) map[string]any {
		return map[string]any{"client_name": name, "client_uri": "https://client.example.org/", "application_type": "native",
			"redirect_uris": []string{"http://127.0.0.1/callback"}, "grant_types": []string{"authorization_code", "refresh_token"}}
	}
	if r := registerOAuthClient(t, s, md(strings.Repeat("é", 256))); r.Status != 201 {
		t.Errorf("client_name of 256 characters: %d %s", r.Status, r.Raw)
	}
	expectOAuthErr(t, registerOAuthClient(t, s, md(strings.Repeat("x", 257))), "client_name of 257 characters", 400, "invalid_client_metadata")
	long := md("ok")
	long["client_name#fr"] = strings.Repeat("x", 257)
	expectOAuthErr(t, registerOAuthClient(t, s, long), "localised client_name of 257 characters", 400, "invalid_client_metadata")
	big := md("ok")
	big["software_statement_padding"] = strings.Repeat("x", 9000)
	expectOAuthErr(t, registerOAuthClient(t, s, big), "9 KB of metadata", 400, "invalid_client_metadata")

	unused := nativeClient(t, s, nil)
	used := nativeClient(t, s, nil)
	tok := codeFlow(t, s, used, randomDeviceID(), "alice", testPassword)
	pending := nativeClient(t, s, nil)
	dev := tokenRequest(t, s, "/_lattice/oauth2/device", url.Values{"client_id": {pending}, "scope": {"urn:matrix:client:api:* urn:matrix:client:device:" + randomDeviceID()}})
	if dev.Status != 200 {
		t.Fatalf("device authorization: %d %s", dev.Status, dev.Raw)
	}
	execDB(t, s, fmt.Sprintf(`UPDATE oauth_clients SET created_ts = %d`, time.Now().Add(-8*24*time.Hour).UnixMilli()))
	s.Stop()
	s.Start()
	nativeClient(t, s, nil) // a registration starts the collection
	known := func(clientID string) bool {
		r := tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "client_id": {clientID}})
		return str(r.Body, "error") != "invalid_client"
	}
	deadline := time.Now().Add(5 * time.Second)
	for known(unused) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if known(unused) {
		t.Error("an unused client registered 8 days ago is still known")
	}
	if !known(used) || !known(pending) {
		t.Errorf("clients in use were deleted: with a session %v, with a grant %v", known(used), known(pending))
	}
	if r := tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {str(tok.Body, "refresh_token")}, "client_id": {used}}); r.Status != 200 {
		t.Errorf("refresh of the client in use: %d %s", r.Status, r.Raw)
	}

	// Rate: a burst of registrations from one address ends in 429 with Retry-After.
	raw, _ := json.Marshal(md("burst"))
	for i := 0; i < 30; i++ {
		resp, err := httpClient.Post(s.URL+"/_lattice/oauth2/register", "application/json", bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 429 {
			if strings.Contains(string(body), "slow_down") || resp.Header.Get("Retry-After") == "" {
				t.Errorf("429: %s, Retry-After %q", body, resp.Header.Get("Retry-After"))
			}
			return
		}
	}
	t.Error("30 registrations in a burst were all accepted")
}

// TestOAuthCrossSigningResetSession: the m.oauth stage continues only the UIA session the
// server issued, not any made-up one.
func TestOAuthCrossSigningResetSession(t *testing.T) {
	s := StartServer(t)
	alice := s.Register(t, "alice")
	clientID := nativeClient(t, s, nil)
	tok := codeFlow(t, s, clientID, randomDeviceID(), "alice", testPassword)
	oc := &Client{t: t, srv: s, UserID: alice.UserID, Token: str(tok.Body, "access_token")}
	csKeys := func() map[string]any { return newCrossSigningKeys(t, alice.UserID) }
	const path = "/_matrix/client/v3/keys/device_signing/upload"
	expectOK(t, oc.Do("POST", path, csKeys()), "first upload")
	keys := csKeys()
	r := oc.Do("POST", path, keys)
	if r.Status != 401 {
		t.Fatalf("replacement: %d %s", r.Status, r.Raw)
	}
	session, link := str(r.Body, "session"), str(obj(obj(r.Body, "params"), "m.oauth"), "url")
	if r := oc.Do("POST", path, withAuth(keys, map[string]any{"session": session})); r.Status != 401 || str(r.Body, "session") != session {
		t.Fatalf("before approval, the stage is asked again in the same session: %d %s", r.Status, r.Raw)
	}
	b := newBrowser(t, s)
	p := b.signIn(b.get(link), "alice", testPassword)
	f := formTo(t, p, "/_lattice/account/cross_signing_reset")
	if p = b.post(f.Action, f.Values); p.Status != 200 {
		t.Fatalf("approval: %d", p.Status)
	}
	if r := oc.Do("POST", path, withAuth(keys, map[string]any{"session": "made-up"})); r.Status != 401 {
		t.Fatalf("made-up session after approval: %d %s", r.Status, r.Raw)
	}
	expectOK(t, oc.Do("POST", path, withAuth(keys, map[string]any{"session": session})), "the issued session after approval")
}

// TestOAuthRepeatedParams: a parameter given twice is refused (RFC 6749 section 3.1): an
// error page when it is the client or the redirect URI, else invalid_request.
func TestOAuthRepeatedParams(t *testing.T) {
	s := StartServer(t)
	s.Register(t, "alice")
	clientID := nativeClient(t, s, nil)
	other := nativeClient(t, s, nil)
	b := newBrowser(t, s)
	_, challenge := pkce()
	base := authorizeURL(s, clientID, "http://127.0.0.1/callback", "urn:matrix:client:api:* urn:matrix:client:device:"+randomDeviceID(), "s", challenge, nil)
	if p := b.get(base + "&client_id=" + other); p.Status != 400 || p.Location != "" {
		t.Errorf("client_id twice: %d %s", p.Status, p.Location)
	}
	if p := b.get(base + "&redirect_uri=" + url.QueryEscape("http://127.0.0.1/callback")); p.Status != 400 || p.Location != "" {
		t.Errorf("redirect_uri twice: %d %s", p.Status, p.Location)
	}
	p := b.get(base + "&scope=openid")
	if u, err := url.Parse(p.Location); err != nil || u.Query().Get("error") != "invalid_request" {
		t.Errorf("scope twice: %d %s", p.Status, p.Location)
	}
	expectOAuthErr(t, tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"refresh_token", "refresh_token"},
		"refresh_token": {"x"}, "client_id": {clientID}}), "grant_type twice", 400, "invalid_request")
	expectOAuthErr(t, tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"refresh_token"},
		"refresh_token": {"x"}, "client_id": {clientID, other}}), "client_id twice", 400, "invalid_request")
}

// TestOAuthPromptNone: prompt=none answers at once, without a page: login_required when not
// signed in, consent_required when signed in (every client needs the user's approval).
func TestOAuthPromptNone(t *testing.T) {
	s := StartServer(t)
	s.Register(t, "alice")
	clientID := nativeClient(t, s, nil)
	b := newBrowser(t, s)
	_, challenge := pkce()
	authorize := func(prompt string) url.Values {
		t.Helper()
		p := b.get(authorizeURL(s, clientID, "http://127.0.0.1/callback", "urn:matrix:client:api:* urn:matrix:client:device:"+randomDeviceID(), "st", challenge, url.Values{"prompt": {prompt}}))
		u, err := url.Parse(p.Location)
		if err != nil || !strings.HasPrefix(p.Location, "http://127.0.0.1/callback") {
			t.Fatalf("prompt=%s: %d %s", prompt, p.Status, p.Location)
		}
		return u.Query()
	}
	if q := authorize("none"); q.Get("error") != "login_required" || q.Get("state") != "st" {
		t.Errorf("prompt=none signed out: %v", q)
	}
	p := b.get(authorizeURL(s, clientID, "http://127.0.0.1/callback", "urn:matrix:client:api:* urn:matrix:client:device:"+randomDeviceID(), "st", challenge, nil))
	b.signIn(p, "alice", testPassword)
	if q := authorize("none"); q.Get("error") != "consent_required" {
		t.Errorf("prompt=none signed in: %v", q)
	}
	if q := authorize("none login"); q.Get("error") != "invalid_request" {
		t.Errorf("prompt=none login: %v", q)
	}
}

// TestOAuthPageHeaders: the pages forbid forms posting elsewhere (the consent page allows its
// client's redirect), and behind https the session cookie has the __Host- prefix.
func TestOAuthPageHeaders(t *testing.T) {
	s := StartServer(t)
	s.Register(t, "alice")
	clientID := nativeClient(t, s, nil)
	b := newBrowser(t, s)
	_, challenge := pkce()
	resp, err := httpClient.Get(s.URL + "/_lattice/account/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self'") {
		t.Errorf("login page CSP %q", csp)
	}
	if ck := resp.Header.Get("Set-Cookie"); !strings.HasPrefix(ck, "lattice_session=") {
		t.Errorf("cookie over http: %q", ck)
	}
	p := b.get(authorizeURL(s, clientID, "http://127.0.0.1:43123/callback", "urn:matrix:client:api:* urn:matrix:client:device:"+randomDeviceID(), "st", challenge, nil))
	b.signIn(p, "alice", testPassword)
	req, _ := http.NewRequest("GET", authorizeURL(s, clientID, "http://127.0.0.1:43123/callback", "urn:matrix:client:api:* urn:matrix:client:device:"+randomDeviceID(), "st", challenge, nil), nil)
	for _, c := range b.c.Jar.Cookies(req.URL) {
		req.AddCookie(c)
	}
	resp, err = b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' http://127.0.0.1:43123") {
		t.Errorf("consent page CSP %q", csp)
	}

	setConfig(t, s, `public_base_url: ""`, `public_base_url: "https://matrix.example.org"`)
	resp, err = httpClient.Get(s.URL + "/_lattice/account/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ck := resp.Header.Get("Set-Cookie"); !strings.HasPrefix(ck, "__Host-lattice_session=") || !strings.Contains(ck, "Path=/;") || !strings.Contains(ck, "Secure") {
		t.Errorf("cookie behind https: %q", ck)
	}
}

// TestOAuthClientURIChecks: client URIs on look-alike (non-ASCII) hosts and on public
// suffixes are refused; loopback host names are case-insensitive; a loopback URI with a user
// gets an error saying so.
func TestOAuthClientURIChecks(t *testing.T) {
	s := StartServer(t)
	reg := func(clientURI, appType string, redirects ...string) Resp {
		return registerOAuthClient(t, s, map[string]any{"client_uri": clientURI, "application_type": appType, "redirect_uris": redirects,
			"grant_types": []string{"authorization_code", "refresh_token"}})
	}
	expectOAuthErr(t, reg("https://\u0435xample.com/", "web", "https://\u0435xample.com/cb"), "Cyrillic client_uri host", 400, "invalid_client_metadata")
	expectOAuthErr(t, reg("https://com/", "web", "https://evil.com/cb"), "public suffix client_uri", 400, "invalid_client_metadata")
	expectOAuthErr(t, reg("https://github.io/", "web", "https://evil.github.io/cb"), "private public suffix client_uri", 400, "invalid_client_metadata")
	if r := reg("https://xn--xample-2of.com/", "web", "https://xn--xample-2of.com/cb"); r.Status != 201 {
		t.Errorf("punycode client_uri: %d %s", r.Status, r.Raw)
	}
	if r := reg("https://app.example.com/", "native", "http://LOCALHOST/cb"); r.Status != 201 {
		t.Errorf("http://LOCALHOST/cb: %d %s", r.Status, r.Raw)
	}
	r := reg("https://app.example.com/", "native", "http://user@localhost/cb")
	expectOAuthErr(t, r, "loopback with a user", 400, "invalid_redirect_uri")
	if strings.Contains(str(r.Body, "error_description"), "port") {
		t.Errorf("loopback with a user: %s", r.Raw)
	}
}

// TestOAuthGrantChecks: an S256 code challenge is 43 base64url characters; a client that did
// not register the refresh_token grant type cannot use it (client metadata: grant_types
// "MUST include ... the refresh_token value to use the refresh token grant").
func TestOAuthGrantChecks(t *testing.T) {
	s := StartServer(t)
	s.Register(t, "alice")
	clientID := nativeClient(t, s, nil)
	b := newBrowser(t, s)
	for _, bad := range []string{strings.Repeat("A", 44), strings.Repeat("A", 42) + "!", strings.Repeat("A", 42) + "="} {
		p := b.get(authorizeURL(s, clientID, "http://127.0.0.1/callback", "urn:matrix:client:api:* urn:matrix:client:device:"+randomDeviceID(), "s", bad, nil))
		if u, err := url.Parse(p.Location); err != nil || u.Query().Get("error") != "invalid_request" {
			t.Errorf("code_challenge %q: %d %s", bad, p.Status, p.Location)
		}
	}
	noRefresh := nativeClient(t, s, map[string]any{"grant_types": []string{"authorization_code"}})
	tok := codeFlow(t, s, noRefresh, randomDeviceID(), "alice", testPassword)
	expectOAuthErr(t, tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"refresh_token"},
		"refresh_token": {str(tok.Body, "refresh_token")}, "client_id": {noRefresh}}), "refresh without the grant type", 400, "unauthorized_client")
}

// TestOAuthUserCodeGuessing: a signed-in user typing one wrong user code after another is
// stopped (RFC 8628 section 5.1).
func TestOAuthUserCodeGuessing(t *testing.T) {
	s := StartServer(t)
	s.Register(t, "alice")
	b := newBrowser(t, s)
	b.signIn(b.get("/_lattice/account/device"), "alice", testPassword)
	for i := 0; i < 30; i++ {
		p := b.get(fmt.Sprintf("/_lattice/account/device?user_code=BCDF-GH%02d", i))
		if p.Status == 429 {
			return
		} else if p.Status != 404 {
			t.Fatalf("guess %d: %d", i, p.Status)
		}
	}
	t.Error("30 wrong user codes in a row were all looked up")
}

// TestOAuthRefreshScope: a refresh answers with the scope granted, in the client's spelling
// (a client using MSC2967's unstable scope names gets them back).
func TestOAuthRefreshScope(t *testing.T) {
	s := StartServer(t)
	s.Register(t, "alice")
	clientID := nativeClient(t, s, nil)
	b := newBrowser(t, s)
	verifier, challenge := pkce()
	scope := "urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:" + randomDeviceID()
	p := b.get(authorizeURL(s, clientID, "http://127.0.0.1:43123/callback", scope, "st", challenge, nil))
	p = b.signIn(p, "alice", testPassword)
	code, _ := codeFrom(t, b.consent(p, "allow"))
	tok := exchangeCode(t, s, clientID, code, verifier)
	if tok.Status != 200 || str(tok.Body, "scope") != scope {
		t.Fatalf("exchange: %d %s", tok.Status, tok.Raw)
	}
	r := tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {str(tok.Body, "refresh_token")}, "client_id": {clientID}})
	if r.Status != 200 || str(r.Body, "scope") != scope {
		t.Errorf("refresh: %d %s", r.Status, r.Raw)
	}
}
