package e2e

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lattice-chat/lattice/internal/oidctest"
)

// oidcProviderDir holds the OpenID Connect provider the SSO tests sign in at: the
// oidc-provider package (a certified OpenID provider implementation) run by node, with its
// built-in login and consent pages. 9.13.3 is the version package.json pins.
const (
	oidcProviderDir     = "oidcprovider"
	oidcProviderVersion = oidctest.Version
)

// ssoRedirect is the redirectUrl of the tests' client: never contacted, the tests read the
// loginToken from the link or redirect that leads to it.
const ssoRedirect = "https://client.example/after-login?x=1"

// ssoLoginTokenLifetime is the sso.login_token_lifetime of the test server (get_token's
// tokens), ssoRedirectTokenLifetime its sso.redirect_login_token_lifetime (the tokens a
// client gets at the end of a single sign-on).
const (
	ssoLoginTokenLifetime    = 4 * time.Second
	ssoRedirectTokenLifetime = 3 * time.Second
)

// oidcAccount is an account at a test provider: its claims. Accounts are keyed by their
// subject, which is also the login name typed on the provider's login page.
type oidcAccount = map[string]any

// startOIDCProvider runs a provider on loopback accepting the client lattice/lattice-secret
// with the given redirect URI and accounts; it returns the issuer URL.
func startOIDCProvider(t *testing.T, node, redirectURI string, accounts map[string]oidcAccount) string {
	return oidctest.Start(t, node, oidcProviderDir, "lattice-secret", redirectURI, accounts)
}

// ssoServer starts lattice with two providers: "corp" (claims required, e-mail domains
// limited) and "other" (allow_existing_users).
func ssoServer(t *testing.T) (*Server, string, string) {
	node, npm := requireTool(t, "node"), requireTool(t, "npm")
	ensureNPMPackage(t, npm, oidcProviderDir, "oidc-provider", oidcProviderVersion)
	srv := StartServer(t)
	callback := srv.URL + "/_lattice/sso/callback"
	corp := startOIDCProvider(t, node, callback, map[string]oidcAccount{
		"corp-0001": {"preferred_username": "Alice", "name": "Alice Liddell", "email": "alice@example.org", "email_verified": true, "department": "eng"},
		// Another identity whose user name is taken by then: a new account, alice1.
		"corp-0002": {"preferred_username": "alice", "name": "Another Alice", "email": "alice2@example.org", "email_verified": true, "department": "eng"},
		"corp-0003": {"preferred_username": "bob", "email": "bob@example.org", "email_verified": true, "department": "sales"},
		"corp-0004": {"preferred_username": "carol", "email": "carol@evil.test", "email_verified": true, "department": "eng"},
		"corp-0005": {"preferred_username": "Dan Brown!", "email": "dan@example.org", "email_verified": true, "department": "eng"},
		// An address the provider does not say it verified proves nothing about its domain.
		"corp-0006": {"preferred_username": "ursula", "email": "ursula@example.org", "department": "eng"},
		"corp-0007": {"preferred_username": "victor", "email": "victor@example.org", "email_verified": "false", "department": "eng"},
	})
	other := startOIDCProvider(t, node, callback, map[string]oidcAccount{
		"other-erin":   {"preferred_username": "erin", "name": "Erin from Other"},
		"other-frank":  {"preferred_username": "frank", "name": "Frank"},
		"other-nobody": {"preferred_username": "nobody"},
		// allow_existing_users does not link an account linked to another identity already,
		// nor an admin's.
		"other-erin2": {"preferred_username": "erin"},
		"other-admin": {"preferred_username": "ssoadmin"},
	})
	srv.Stop()
	cfg, err := os.ReadFile(srv.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(cfg), `public_base_url: ""`, `public_base_url: "`+srv.URL+`"`, 1)
	providers := fmt.Sprintf(`providers:
    - id: "corp"
      name: "Corp SSO"
      brand: "gitlab"
      icon: "mxc://example.org/corplogo"
      issuer: %q
      client_id: "lattice"
      client_secret: "lattice-secret"
      allowed_email_domains: ["example.org"]
      required_claims: {department: "eng"}
    - id: "other"
      name: "Other ID"
      issuer: %q
      client_id: "lattice"
      client_secret: "lattice-secret"
      allow_existing_users: true`, corp, other)
	for old, repl := range map[string]string{
		"providers: []":                       providers,
		"client_whitelist: []":                `client_whitelist: ["https://trusted.example"]`,
		`login_token_lifetime: "2m"`:          fmt.Sprintf("login_token_lifetime: %q", ssoLoginTokenLifetime.String()),
		`redirect_login_token_lifetime: "5s"`: fmt.Sprintf("redirect_login_token_lifetime: %q", ssoRedirectTokenLifetime.String()),
	} {
		if !strings.Contains(s, old) {
			t.Fatalf("generated config lacks %q", old)
		}
		s = strings.Replace(s, old, repl, 1)
	}
	if err := os.WriteFile(srv.ConfigPath, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Start()
	return srv, corp, other
}

// newSSOBrowser is a browser that also follows redirects to the OpenID providers on loopback
// (never to the client's redirectUrl).
func newSSOBrowser(t *testing.T, srv *Server) *browser {
	b := newBrowser(t, srv)
	b.c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Hostname() != "127.0.0.1" || len(via) > 20 {
			return http.ErrUseLastResponse // the client's redirectUrl is never contacted
		}
		return nil
	}
	return b
}

var anchorRe = regexp.MustCompile(`<a [^>]*href="([^"]*)"[^>]*>`)

// submit fills the first form of p with fields (over its own inputs) and posts it.
func (b *browser) submit(p page, fields map[string]string) page {
	b.t.Helper()
	fs := forms(b.t, p.Body)
	if len(fs) == 0 {
		b.t.Fatalf("no form on %s (%d): %.2000s", p.URL, p.Status, p.Body)
	}
	for k, v := range fields {
		fs[0].Values.Set(k, v)
	}
	return b.post(fs[0].Action, fs[0].Values)
}

// signInAt starts the legacy SSO flow at start and signs in as login at the provider's login
// page, then its consent page; it returns the page the provider's callback led to.
func (b *browser) signInAt(start, login string) page {
	b.t.Helper()
	return b.atProvider(b.get(start), "GET "+start, login)
}

// atProvider signs in as login on the provider's login page p (reached by what), then
// answers its consent page; it returns the page the provider's callback led to.
func (b *browser) atProvider(p page, what, login string) page {
	b.t.Helper()
	if !strings.Contains(p.Body, `name="login"`) {
		b.t.Fatalf("%s led to %s (%d), not the provider's login form: %.2000s", what, p.URL, p.Status, p.Body)
	}
	p = b.submit(p, map[string]string{"login": login, "password": "any password"})
	if strings.Contains(p.Body, `value="consent"`) {
		p = b.submit(p, nil)
	}
	return p
}

// reauth opens the m.login.sso fallback page at fallback, presses the button of the provider
// idp and signs in there as login; it returns the page the callback led to.
func (b *browser) reauth(fallback, idp, login string) page {
	b.t.Helper()
	p := b.get(fallback)
	for _, f := range forms(b.t, p.Body) {
		if f.Values.Get("idp") == idp {
			return b.atProvider(b.post(f.Action, f.Values), "the "+idp+" button", login)
		}
	}
	b.t.Fatalf("fallback page %s (%d) has no button for %s: %.2000s", fallback, p.Status, idp, p.Body)
	return page{}
}

// uiaChallenge401 returns the session of a 401 user-interactive authentication answer.
func uiaChallenge401(t *testing.T, r Resp) string {
	t.Helper()
	if r.Status != 401 || str(r.Body, "session") == "" {
		t.Fatalf("want 401 with a session, got %d %s", r.Status, r.Raw)
	}
	return str(r.Body, "session")
}

// ssoLoginToken signs in as login from start, presses "Continue" on the confirmation page
// and returns the loginToken of the redirect to the client.
func (b *browser) ssoLoginToken(start, login string) string {
	b.t.Helper()
	p := b.signInAt(start, login)
	if p.Status != 200 || !strings.Contains(p.Body, "Continue to client.example") {
		b.t.Fatalf("after sign-in: %s %d, want the confirmation page: %.2000s", p.URL, p.Status, p.Body)
	}
	if strings.Contains(p.Body, "loginToken") {
		b.t.Errorf("the confirmation page shows a login token before the user continues: %s", p.Body)
	}
	p = b.submit(p, nil)
	u, err := url.Parse(p.Location)
	if p.Status != http.StatusFound || err != nil || !strings.HasPrefix(p.Location, "https://client.example/after-login?x=1&loginToken=") {
		b.t.Fatalf("continue: %d Location %q, want the client's redirectUrl with a loginToken", p.Status, p.Location)
	}
	return u.Query().Get("loginToken")
}

func tokenLogin(t *testing.T, srv *Server, token string) Resp {
	t.Helper()
	return anon(t, srv, "POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.token", "token": token})
}

func ssoStart(srv *Server, idp string) string {
	path := "/_matrix/client/v3/login/sso/redirect"
	if idp != "" {
		path += "/" + idp
	}
	return srv.URL + path + "?redirectUrl=" + url.QueryEscape(ssoRedirect)
}

// expectPage checks an error page's status and that it says why.
func expectPage(t *testing.T, p page, what string, status int, says string) {
	t.Helper()
	if p.Status != status || !strings.Contains(p.Body, says) || !strings.Contains(p.Body, "<html") {
		t.Errorf("%s: %s %d, want an HTML page %d saying %q: %.1500s", what, p.URL, p.Status, status, says, p.Body)
	}
}

// TestSSO signs users in through real OpenID Connect providers with the legacy SSO flow
// (login.yaml, sso_login_redirect.yaml) and checks login tokens (login_token.yaml).
func TestSSO(t *testing.T) {
	srv, _, _ := ssoServer(t)

	t.Run("login flows list the identity providers", func(t *testing.T) {
		r := anon(t, srv, "GET", "/_matrix/client/v3/login", nil)
		expectOK(t, r, "GET /login")
		var sso, token map[string]any
		for _, f := range list(r.Body, "flows") {
			switch str(f, "type") {
			case "m.login.sso":
				sso = f
			case "m.login.token":
				token = f
			}
		}
		if sso == nil || token == nil || token["get_login_token"] != true {
			t.Fatalf("GET /login = %s, want m.login.sso and m.login.token with get_login_token", r.Raw)
		}
		if sso["oauth_aware_preferred"] != true {
			t.Errorf("m.login.sso flow = %s, want oauth_aware_preferred: true (the OAuth 2.0 API is on)", jsonString(sso))
		}
		idps := list(sso, "identity_providers")
		if len(idps) != 2 || str(idps[0], "id") != "corp" || str(idps[0], "name") != "Corp SSO" ||
			str(idps[0], "brand") != "gitlab" || str(idps[0], "icon") != "mxc://example.org/corplogo" ||
			str(idps[1], "id") != "other" || str(idps[1], "name") != "Other ID" {
			t.Errorf("identity_providers = %s", jsonString(sso["identity_providers"]))
		}
	})

	var aliceID string
	t.Run("sign-in makes an account from the claims, then finds it again", func(t *testing.T) {
		token := newSSOBrowser(t, srv).ssoLoginToken(ssoStart(srv, "corp"), "corp-0001")
		r := tokenLogin(t, srv, token)
		expectOK(t, r, "m.login.token")
		aliceID = str(r.Body, "user_id")
		if aliceID != "@alice:localhost" || str(r.Body, "access_token") == "" {
			t.Fatalf("login = %s, want @alice:localhost with an access token", r.Raw)
		}
		alice := &Client{t: t, srv: srv, UserID: aliceID, Token: str(r.Body, "access_token")}
		p := call(alice, "GET", "/_matrix/client/v3/profile/"+esc(aliceID), nil)
		if str(p.Body, "displayname") != "Alice Liddell" {
			t.Errorf("profile = %s, want the name claim as display name", p.Raw)
		}
		// The token is single-use.
		expectErr(t, tokenLogin(t, srv, token), "reused login token", 403, "M_FORBIDDEN")
		// No password, but the m.login.sso stage: the account can make login tokens.
		c := call(alice, "GET", "/_matrix/client/v3/capabilities", nil)
		if v := obj(c.Body, "capabilities", "m.get_login_token")["enabled"]; v != true {
			t.Errorf("m.get_login_token of an SSO user = %v, want true", v)
		}

		// Signing in again (another browser, another session at the provider): same account.
		r = tokenLogin(t, srv, newSSOBrowser(t, srv).ssoLoginToken(ssoStart(srv, "corp"), "corp-0001"))
		expectOK(t, r, "second sign-in")
		if str(r.Body, "user_id") != aliceID {
			t.Errorf("second sign-in = %s, want %s again", str(r.Body, "user_id"), aliceID)
		}
	})

	t.Run("the OAuth 2.0 sign-in page signs in through a provider", func(t *testing.T) {
		// A native client's authorization code flow with PKCE; the user presses "Sign in with
		// Corp SSO" instead of typing a password, signs in at the provider, consents.
		clientID := nativeClient(t, srv, nil)
		verifier, challenge := pkce()
		deviceID := randomDeviceID()
		redirect := "http://127.0.0.1/callback"
		b := newSSOBrowser(t, srv)
		b.c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if req.URL.Hostname() != "127.0.0.1" || req.URL.Port() == "" || len(via) > 20 {
				return http.ErrUseLastResponse // the client's redirect URI is never contacted
			}
			return nil
		}
		p := b.get(authorizeURL(srv, clientID, redirect, "urn:matrix:client:api:* urn:matrix:client:device:"+deviceID, "st4te", challenge, nil))
		var start string
		for _, m := range anchorRe.FindAllStringSubmatch(p.Body, -1) {
			if h := html.UnescapeString(m[1]); strings.HasPrefix(h, "/_lattice/sso/web/corp/start?next=") {
				start = h
			}
		}
		if p.Status != 200 || start == "" || !strings.Contains(p.Body, "Sign in with Corp SSO") {
			t.Fatalf("sign-in page of the authorization: %s %d, want a Sign in with Corp SSO button: %.3000s", p.URL, p.Status, p.Body)
		}
		p = b.signInAt(srv.URL+start, "corp-0001")
		code, state := codeFrom(t, b.consent(p, "allow"))
		if state != "st4te" {
			t.Errorf("state %q", state)
		}
		r := tokenRequest(t, srv, "/_lattice/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {redirect}, "client_id": {clientID}, "code_verifier": {verifier}})
		if r.Status != 200 {
			t.Fatalf("code exchange: %d %s", r.Status, r.Raw)
		}
		c := &Client{t: t, srv: srv, Token: str(r.Body, "access_token")}
		if w := whoami(c); str(w.Body, "user_id") != "@alice:localhost" || str(w.Body, "device_id") != deviceID {
			t.Errorf("whoami of the OAuth session = %d %s, want @alice:localhost on %s", w.Status, w.Raw, deviceID)
		}

		// The continuation goes to local pages only, and needs the sign-in of this browser.
		b = newSSOBrowser(t, srv)
		p = b.signInAt(srv.URL+"/_lattice/sso/web/corp/start?next="+url.QueryEscape("//evil.example/x"), "corp-0001")
		if p.Status != 200 || !strings.HasPrefix(p.URL, srv.URL+"/_lattice/account/") || p.Location != "" {
			t.Errorf("next to another site: ended at %s (%d) Location %q, want the account page", p.URL, p.Status, p.Location)
		}
		expectPage(t, newSSOBrowser(t, srv).get(srv.URL+"/_lattice/sso/web/corp/done?next=%2F_lattice%2Faccount%2F"), "done without a sign-in", 400, "not valid")
		if r := anon(t, srv, "GET", "/_lattice/sso/web/nope/start", nil); r.Status != 404 {
			t.Errorf("unknown provider: %d %s", r.Status, r.Raw)
		}
	})

	t.Run("a taken user name gets digits, a strange one is mapped", func(t *testing.T) {
		r := tokenLogin(t, srv, newSSOBrowser(t, srv).ssoLoginToken(ssoStart(srv, "corp"), "corp-0002"))
		expectOK(t, r, "alice-other")
		if got := str(r.Body, "user_id"); got != "@alice1:localhost" {
			t.Errorf("second identity named alice = %s, want @alice1:localhost", got)
		}
		r = tokenLogin(t, srv, newSSOBrowser(t, srv).ssoLoginToken(ssoStart(srv, "corp"), "corp-0005"))
		expectOK(t, r, "dan")
		if got := str(r.Body, "user_id"); got != "@dan=20brown=21:localhost" {
			t.Errorf("preferred_username %q = %s, want @dan=20brown=21:localhost", "Dan Brown!", got)
		}
	})

	t.Run("claims and e-mail domains are enforced", func(t *testing.T) {
		expectPage(t, newSSOBrowser(t, srv).signInAt(ssoStart(srv, "corp"), "corp-0003"), "required claim mismatch", 403, "department")
		expectPage(t, newSSOBrowser(t, srv).signInAt(ssoStart(srv, "corp"), "corp-0004"), "disallowed e-mail domain", 403, "evil.test")
		expectPage(t, newSSOBrowser(t, srv).signInAt(ssoStart(srv, "corp"), "corp-0006"), "no email_verified claim", 403, "not verified")
		expectPage(t, newSSOBrowser(t, srv).signInAt(ssoStart(srv, "corp"), "corp-0007"), `email_verified "false"`, 403, "not verified")
		for _, who := range []string{"bob", "carol", "ursula", "victor"} {
			r := loginPassword(t, srv, who, testPassword)
			expectErr(t, r, "refused user has no account", 403, "M_FORBIDDEN")
			a := srv.Do(t, "", "GET", "/_matrix/client/v3/profile/"+esc("@"+who+":localhost"), nil)
			if a.Status != 404 {
				t.Errorf("profile of refused %s: %d, want 404 (no account made)", who, a.Status)
			}
		}
	})

	t.Run("a provider's error is shown", func(t *testing.T) {
		b := newSSOBrowser(t, srv)
		p := b.get(ssoStart(srv, "corp"))
		var abort string
		for _, m := range anchorRe.FindAllStringSubmatch(p.Body, -1) {
			if strings.Contains(m[1], "/abort") {
				abort = html.UnescapeString(m[1])
			}
		}
		if abort == "" {
			t.Fatalf("provider login page has no cancel link: %.2000s", p.Body)
		}
		base, _ := url.Parse(p.URL)
		u, _ := base.Parse(abort)
		expectPage(t, b.get(u.String()), "cancelled at the provider", 403, "access_denied")
	})

	t.Run("several providers: a page to choose, and the second provider works", func(t *testing.T) {
		b := newSSOBrowser(t, srv)
		// With the OAuth 2.0 API on, the redirect without a provider is this server's sign-in
		// page ("OAuth 2.0 aware clients"), offering the password and both providers.
		p := b.get(ssoStart(srv, ""))
		if p.Status != 200 || !strings.HasPrefix(p.URL, srv.URL+"/_lattice/account/login?") ||
			!strings.Contains(p.Body, "Sign in with Corp SSO") || !strings.Contains(p.Body, "Sign in with Other ID") {
			t.Fatalf("sign-in page: %s %d %.2000s", p.URL, p.Status, p.Body)
		}
		formTo(t, p, "/_lattice/account/login")
		var otherLink string
		for _, m := range anchorRe.FindAllStringSubmatch(p.Body, -1) {
			if strings.Contains(m[1], "/_lattice/sso/web/other/start?next=") {
				otherLink = html.UnescapeString(m[1])
			}
		}
		if otherLink == "" {
			t.Fatalf("sign-in page has no link to the other provider: %s", p.Body)
		}
		if p := newSSOBrowser(t, srv).get(ssoStart(srv, "") + "&action=register"); p.Status != 200 || !strings.HasPrefix(p.URL, srv.URL+"/_lattice/account/register?") {
			t.Errorf("action=register: %s %d, want the registration page", p.URL, p.Status)
		}
		base, _ := url.Parse(p.URL)
		u, _ := base.Parse(otherLink)
		r := tokenLogin(t, srv, b.ssoLoginToken(u.String(), "other-frank"))
		expectOK(t, r, "frank at other")
		if str(r.Body, "user_id") != "@frank:localhost" {
			t.Errorf("frank = %s", r.Raw)
		}
		// allow_existing_users: erin's first sign-in takes over the local account erin.
		erin := srv.Register(t, "erin")
		r = tokenLogin(t, srv, newSSOBrowser(t, srv).ssoLoginToken(ssoStart(srv, "other"), "other-erin"))
		expectOK(t, r, "erin at other")
		if str(r.Body, "user_id") != erin.UserID {
			t.Errorf("erin = %s, want the existing %s", str(r.Body, "user_id"), erin.UserID)
		}
		// The link is the admin API's external ID.
		admin := srv.RegisterAdmin(t, "ssoadmin")
		a := call(admin, "GET", "/_synapse/admin/v1/auth_providers/other/users/other-erin", nil)
		if str(a.Body, "user_id") != erin.UserID {
			t.Errorf("admin lookup of other/other-erin = %d %s", a.Status, a.Raw)
		}
		// Another identity of the same provider claiming the name erin does not get erin's
		// account, nor does an identity claiming an admin's name.
		expectPage(t, newSSOBrowser(t, srv).signInAt(ssoStart(srv, "other"), "other-erin2"), "second identity claiming erin", 403, "linked to another")
		expectPage(t, newSSOBrowser(t, srv).signInAt(ssoStart(srv, "other"), "other-admin"), "identity claiming an admin's name", 403, "administrator")
		for _, sub := range []string{"other-erin2", "other-admin"} {
			if a := call(admin, "GET", "/_synapse/admin/v1/auth_providers/other/users/"+sub, nil); a.Status != 404 {
				t.Errorf("refused identity %s is linked: %d %s", sub, a.Status, a.Raw)
			}
		}
	})

	t.Run("a whitelisted client gets the token without the confirmation page", func(t *testing.T) {
		start := srv.URL + "/_matrix/client/v3/login/sso/redirect/corp?redirectUrl=" + url.QueryEscape("https://trusted.example/cb")
		p := newSSOBrowser(t, srv).signInAt(start, "corp-0001")
		if p.Status != http.StatusFound || !strings.HasPrefix(p.Location, "https://trusted.example/cb?loginToken=") {
			t.Fatalf("whitelisted client: %d Location %q", p.Status, p.Location)
		}
		u, _ := url.Parse(p.Location)
		r := tokenLogin(t, srv, u.Query().Get("loginToken"))
		if str(r.Body, "user_id") != aliceID {
			t.Errorf("token login = %s", r.Raw)
		}
		// loginToken parameters already in the redirectUrl are removed (no login CSRF with
		// someone else's token).
		start = srv.URL + "/_matrix/client/v3/login/sso/redirect/corp?redirectUrl=" + url.QueryEscape("https://trusted.example/cb?loginToken=planted&a=1&loginToken=again")
		p = newSSOBrowser(t, srv).signInAt(start, "corp-0001")
		u, _ = url.Parse(p.Location)
		if q := u.Query(); p.Status != http.StatusFound || len(q["loginToken"]) != 1 || q.Get("loginToken") == "planted" || q.Get("loginToken") == "again" || q.Get("a") != "1" {
			t.Errorf("redirectUrl with loginToken parameters: %d Location %q, want one new loginToken and a=1", p.Status, p.Location)
		}
		// The whitelist matches the origin, not a string prefix.
		start = srv.URL + "/_matrix/client/v3/login/sso/redirect/corp?redirectUrl=" + url.QueryEscape("https://trusted.example.evil/cb")
		p = newSSOBrowser(t, srv).signInAt(start, "corp-0001")
		if p.Status != 200 || !strings.Contains(p.Body, "Continue to trusted.example.evil?") || strings.Contains(p.Location, "loginToken") {
			t.Errorf("look-alike of a whitelisted client: %d Location %q, want the confirmation page: %.1000s", p.Status, p.Location, p.Body)
		}
		// The confirmation's button works only in the browser that signed in.
		expectPage(t, newSSOBrowser(t, srv).post(srv.URL+"/_lattice/sso/continue", url.Values{}), "continue from another browser", 400, "another browser")
	})

	t.Run("a callback without its browser's cookie or with another state is refused", func(t *testing.T) {
		b := newSSOBrowser(t, srv)
		b.c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if strings.HasSuffix(req.URL.Path, "/_lattice/sso/callback") || req.URL.Hostname() != "127.0.0.1" {
				return http.ErrUseLastResponse
			}
			return nil
		}
		p := b.signInAt(ssoStart(srv, "corp"), "corp-0001")
		if !strings.Contains(p.Location, "/_lattice/sso/callback?") {
			t.Fatalf("provider did not send the browser back: %d %q", p.Status, p.Location)
		}
		// Another browser (an attacker who got the URL): no flow cookie.
		expectPage(t, newSSOBrowser(t, srv).get(p.Location), "callback in another browser", 400, "another browser")
		// The right browser, another state.
		u, _ := url.Parse(p.Location)
		q := u.Query()
		q.Set("state", "forged")
		u.RawQuery = q.Encode()
		expectPage(t, b.get(u.String()), "callback with a forged state", 400, "not valid")
		// The flow is spent: the genuine callback now fails too.
		expectPage(t, b.get(p.Location), "replayed callback", 400, "not valid")
	})

	t.Run("redirect endpoint errors", func(t *testing.T) {
		r := anon(t, srv, "GET", "/_matrix/client/v3/login/sso/redirect/corp", nil)
		expectErr(t, r, "no redirectUrl", 400, "M_MISSING_PARAM")
		r = anon(t, srv, "GET", "/_matrix/client/v3/login/sso/redirect/nope?redirectUrl="+url.QueryEscape(ssoRedirect), nil)
		expectErr(t, r, "unknown idp", 404, "M_NOT_FOUND")
		r = anon(t, srv, "GET", "/_matrix/client/v3/login/sso/redirect/corp?redirectUrl="+url.QueryEscape("javascript:alert(1)"), nil)
		expectErr(t, r, "javascript: redirectUrl", 400, "M_INVALID_PARAM")
		expectErr(t, tokenLogin(t, srv, "never-issued"), "unknown login token", 403, "M_FORBIDDEN")
	})

	t.Run("user-interactive auth by signing in again (m.login.sso stage)", func(t *testing.T) {
		login := func(sub string) *Client {
			r := tokenLogin(t, srv, newSSOBrowser(t, srv).ssoLoginToken(ssoStart(srv, "corp"), sub))
			expectOK(t, r, "sign-in of "+sub)
			return &Client{t: t, srv: srv, UserID: str(r.Body, "user_id"), DeviceID: str(r.Body, "device_id"), Token: str(r.Body, "access_token")}
		}
		alice, second := login("corp-0001"), login("corp-0001")
		// The stage the client is offered: single sign-on only (alice has no password).
		path := "/_matrix/client/v3/devices/" + esc(second.DeviceID)
		r := call(alice, "DELETE", path, map[string]any{})
		flows := list(r.Body, "flows")
		if r.Status != 401 || len(flows) != 1 || jsonString(flows[0]["stages"]) != `["m.login.sso"]` {
			t.Fatalf("device deletion without auth: %d %s, want 401 with the one flow [m.login.sso]", r.Status, r.Raw)
		}
		session := str(r.Body, "session")
		// Retrying before the stage is done: 401 again, same session.
		r = call(alice, "DELETE", path, map[string]any{"auth": map[string]any{"session": session}})
		if r.Status != 401 || str(r.Body, "session") != session {
			t.Errorf("retry before the stage: %d %s, want 401 with session %s", r.Status, r.Raw, session)
		}
		// The fallback page says what is approved and for whom, then alice signs in again at corp.
		fallback := srv.URL + "/_matrix/client/v3/auth/m.login.sso/fallback/web?session=" + url.QueryEscape(session)
		p := newSSOBrowser(t, srv).reauth(fallback, "corp", "corp-0001")
		if p.Status != 200 || !strings.Contains(p.Body, "Identity confirmed") || !strings.Contains(p.Body, "onAuthDone") {
			t.Fatalf("after re-authentication: %d %.1500s", p.Status, p.Body)
		}
		r = call(alice, "DELETE", path, map[string]any{"auth": map[string]any{"type": "m.login.sso", "session": session}})
		expectOK(t, r, "device deletion after the m.login.sso stage")
		if w := whoami(second); w.Status != 401 {
			t.Errorf("deleted device's token still works: %d", w.Status)
		}
		// The completed stage is good once, and for the request that started it only.
		third := login("corp-0001")
		thirdPath := "/_matrix/client/v3/devices/" + esc(third.DeviceID)
		r = call(alice, "DELETE", thirdPath, map[string]any{"auth": map[string]any{"session": session}})
		if r.Status != 401 || str(r.Body, "session") == session || str(r.Body, "session") == "" {
			t.Errorf("reused completed session: %d %s, want 401 with a new session", r.Status, r.Raw)
		}
		// Another identity (alice1's) cannot complete alice's session.
		session = uiaChallenge401(t, call(alice, "DELETE", thirdPath, map[string]any{}))
		fallback = srv.URL + "/_matrix/client/v3/auth/m.login.sso/fallback/web?session=" + url.QueryEscape(session)
		expectPage(t, newSSOBrowser(t, srv).reauth(fallback, "corp", "corp-0002"), "alice1 completing alice's session", 403, "is for @alice:localhost")
		r = call(alice, "DELETE", thirdPath, map[string]any{"auth": map[string]any{"session": session}})
		if r.Status != 401 || str(r.Body, "session") != session {
			t.Errorf("session after a refused completion: %d %s, want 401 with the same session", r.Status, r.Raw)
		}
		// An identity linked to no account cannot complete a stage.
		expectPage(t, newSSOBrowser(t, srv).reauth(fallback, "other", "other-nobody"), "unlinked identity", 403, "not linked")
		// A session the server never issued is refused before any sign-in.
		expectPage(t, newSSOBrowser(t, srv).get(srv.URL+"/_matrix/client/v3/auth/m.login.sso/fallback/web?session=mine"),
			"made-up session", 400, "not valid")
		// The confirmation button works only in the browser that was shown the page (no
		// cross-site form posting straight to the provider).
		page := newSSOBrowser(t, srv).get(fallback)
		f := formTo(t, page, "/_matrix/client/v3/auth/m.login.sso/fallback/web")
		expectPage(t, newSSOBrowser(t, srv).post(f.Action, f.Values), "confirmation posted from another browser", 403, "not started in this browser")

		// The reviewer's case: a session started by POST /delete_devices and approved by the
		// user is refused for a password change, and still serves its own request.
		r = call(alice, "POST", "/_matrix/client/v3/delete_devices", map[string]any{"devices": []string{third.DeviceID}})
		session = uiaChallenge401(t, r)
		p = newSSOBrowser(t, srv).get(srv.URL + "/_matrix/client/v3/auth/m.login.sso/fallback/web?session=" + url.QueryEscape(session))
		if !strings.Contains(p.Body, "A client is trying to <strong>sign out some of your devices</strong> for your account <strong>@alice:localhost</strong>") {
			t.Errorf("the fallback page does not say what is approved: %.2000s", p.Body)
		}
		if p = newSSOBrowser(t, srv).reauth(srv.URL+"/_matrix/client/v3/auth/m.login.sso/fallback/web?session="+url.QueryEscape(session), "corp", "corp-0001"); p.Status != 200 {
			t.Fatalf("re-authentication for delete_devices: %d %.1500s", p.Status, p.Body)
		}
		r = call(alice, "POST", "/_matrix/client/v3/account/password", map[string]any{"new_password": "attacker's password 1", "auth": map[string]any{"type": "m.login.sso", "session": session}})
		expectErr(t, r, "password change with a delete_devices session", 403, "M_FORBIDDEN")
		r = call(alice, "POST", "/_matrix/client/v3/delete_devices", map[string]any{"devices": []string{third.DeviceID}, "auth": map[string]any{"type": "m.login.sso", "session": session}})
		expectOK(t, r, "delete_devices with its own approved session")
		if w := whoami(third); w.Status != 401 {
			t.Errorf("third device's token still works: %d", w.Status)
		}

		// The password stage is bound the same way.
		hal := srv.Register(t, "hal")
		halDev := srv.Login(t, "hal")
		session = uiaChallenge(hal, "DELETE", "/_matrix/client/v3/devices/"+esc(halDev.DeviceID), map[string]any{})
		r = call(hal, "POST", "/_matrix/client/v3/account/password", map[string]any{"new_password": "another password 1",
			"auth": map[string]any{"type": "m.login.password", "session": session, "identifier": map[string]any{"type": "m.id.user", "user": "hal"}, "password": testPassword}})
		expectErr(t, r, "password stage with another request's session", 403, "M_FORBIDDEN")
		r = call(hal, "DELETE", "/_matrix/client/v3/devices/"+esc(halDev.DeviceID), map[string]any{
			"auth": map[string]any{"type": "m.login.password", "session": session, "identifier": map[string]any{"type": "m.id.user", "user": "hal"}, "password": testPassword}})
		expectOK(t, r, "password stage with the session of its own request")
	})

	t.Run("get_token with UIA, single use, expiry", func(t *testing.T) {
		gina := srv.Register(t, "gina")
		c := call(gina, "GET", "/_matrix/client/v3/capabilities", nil)
		if v := obj(c.Body, "capabilities", "m.get_login_token")["enabled"]; v != true {
			t.Errorf("m.get_login_token of a password user = %v, want true", v)
		}
		r := uiaPassword(gina, "POST", "/_matrix/client/v1/login/get_token", nil, "wrong password")
		if r.Status != 401 || r.ErrCode() != "M_FORBIDDEN" {
			t.Errorf("get_token with a wrong password: %d %s, want 401 M_FORBIDDEN", r.Status, r.Raw)
		}
		r = uiaPassword(gina, "POST", "/_matrix/client/v1/login/get_token", nil, testPassword)
		expectOK(t, r, "get_token")
		if str(r.Body, "login_token") == "" || r.Body["expires_in_ms"] != float64(ssoLoginTokenLifetime.Milliseconds()) {
			t.Fatalf("get_token = %s", r.Raw)
		}
		l := tokenLogin(t, srv, str(r.Body, "login_token"))
		expectOK(t, l, "login with get_token's token")
		if str(l.Body, "user_id") != gina.UserID || str(l.Body, "device_id") == gina.DeviceID {
			t.Errorf("token login = %s, want %s on a new device", l.Raw, gina.UserID)
		}
		expectErr(t, tokenLogin(t, srv, str(r.Body, "login_token")), "reused get_token token", 403, "M_FORBIDDEN")

		// A single sign-on's token lives briefly (the spec: "around five seconds"), one of
		// get_token longer.
		p := newSSOBrowser(t, srv).signInAt(srv.URL+"/_matrix/client/v3/login/sso/redirect/corp?redirectUrl="+url.QueryEscape("https://trusted.example/cb"), "corp-0001")
		u, _ := url.Parse(p.Location)
		g := uiaPassword(gina, "POST", "/_matrix/client/v1/login/get_token", nil, testPassword)
		time.Sleep(ssoRedirectTokenLifetime + 500*time.Millisecond)
		expectErr(t, tokenLogin(t, srv, u.Query().Get("loginToken")), "expired token of a single sign-on", 403, "M_FORBIDDEN")
		expectOK(t, tokenLogin(t, srv, str(g.Body, "login_token")), "get_token's token after a single sign-on's expired")

		r = uiaPassword(gina, "POST", "/_matrix/client/v1/login/get_token", nil, testPassword)
		expectOK(t, r, "second get_token")
		time.Sleep(ssoLoginTokenLifetime + time.Second)
		expectErr(t, tokenLogin(t, srv, str(r.Body, "login_token")), "expired login token", 403, "M_FORBIDDEN")
	})
}

// TestOAuthAwareLogin: with the OAuth 2.0 API on and no upstream provider, GET /login still
// offers m.login.sso marked oauth_aware_preferred ("OAuth 2.0 aware clients": the server MUST
// provide the flow), and its redirect leads through this server's sign-in page to the
// client's redirectUrl with a login token.
func TestOAuthAwareLogin(t *testing.T) {
	srv := StartServer(t)
	srv.Register(t, "olga")
	r := anon(t, srv, "GET", "/_matrix/client/v3/login", nil)
	var sso, token map[string]any
	for _, f := range list(r.Body, "flows") {
		switch str(f, "type") {
		case "m.login.sso":
			sso = f
		case "m.login.token":
			token = f
		}
	}
	if sso == nil || sso["oauth_aware_preferred"] != true || token == nil {
		t.Fatalf("GET /login = %s, want m.login.sso with oauth_aware_preferred and m.login.token", r.Raw)
	}
	if _, ok := sso["identity_providers"]; ok {
		t.Errorf("identity_providers without providers: %s", jsonString(sso))
	}

	b := newSSOBrowser(t, srv)
	p := b.get(srv.URL + "/_matrix/client/v3/login/sso/redirect?redirectUrl=" + url.QueryEscape(ssoRedirect))
	if p.Status != 200 || !strings.HasPrefix(p.URL, srv.URL+"/_lattice/account/login?") {
		t.Fatalf("SSO redirect: %s %d, want the sign-in page", p.URL, p.Status)
	}
	p = b.signIn(p, "olga", testPassword)
	if p.Status != 200 || !strings.Contains(p.Body, "Continue to client.example") || !strings.Contains(p.Body, "@olga:localhost") {
		t.Fatalf("after signing in: %s %d, want the confirmation page: %.2000s", p.URL, p.Status, p.Body)
	}
	confirm := p
	// Another sign-in opened in the same browser meanwhile (someone else's page opening the
	// flow to their own redirectUrl in a popup) does not capture the first page's button: it
	// is refused, and nothing goes to the other client.
	evil := b.get(srv.URL + "/_lattice/account/sso/legacy?redirectUrl=" + url.QueryEscape("https://evil.example/steal"))
	if !strings.Contains(evil.Body, "Continue to evil.example") {
		t.Fatalf("second flow: %d %.1000s", evil.Status, evil.Body)
	}
	if p := b.submit(confirm, nil); p.Status != http.StatusBadRequest || p.Location != "" {
		t.Fatalf("the first page's Continue after another flow started: %d Location %q", p.Status, p.Location)
	}
	p = b.get(srv.URL + "/_matrix/client/v3/login/sso/redirect?redirectUrl=" + url.QueryEscape(ssoRedirect))
	if !strings.Contains(p.Body, "Continue to client.example") {
		t.Fatalf("signed in again: %s %d %.1000s", p.URL, p.Status, p.Body)
	}
	p = b.submit(p, nil)
	u, _ := url.Parse(p.Location)
	if p.Status != http.StatusFound || !strings.HasPrefix(p.Location, "https://client.example/after-login?x=1&loginToken=") {
		t.Fatalf("continue: %d Location %q", p.Status, p.Location)
	}
	l := tokenLogin(t, srv, u.Query().Get("loginToken"))
	expectOK(t, l, "m.login.token from the web sign-in")
	if str(l.Body, "user_id") != "@olga:localhost" {
		t.Errorf("login = %s, want @olga:localhost", l.Raw)
	}
	// The end of the flow is no way to collect a token: another browser is sent to sign in.
	p = newSSOBrowser(t, srv).get(srv.URL + "/_lattice/account/sso/legacy?redirectUrl=" + url.QueryEscape(ssoRedirect))
	if !strings.HasPrefix(p.URL, srv.URL+"/_lattice/account/login?") || strings.Contains(p.Location, "loginToken") {
		t.Errorf("legacy end without a session: %s %d Location %q, want the sign-in page", p.URL, p.Status, p.Location)
	}
}
