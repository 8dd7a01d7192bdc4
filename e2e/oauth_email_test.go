package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The OAuth 2.0 pages with email: registration with a confirmed address, a forgotten
// password, the account's addresses.

// TestOAuthPagesEmailRegistration: with registration_requires_email (and a registration
// token), prompt=create asks for an address; the account is made only once the mailed link
// was confirmed, and the user then continues the OAuth flow to consent and a token. A wrong
// registration token or a made-up session makes no account; the form needs its CSRF token.
func TestOAuthPagesEmailRegistration(t *testing.T) {
	sink := startMailSink(t)
	s := startEmailServer(t, sink, emailOptions{requireAtRegistration: true, registrationToken: "letmein"})
	clientID := nativeClient(t, s, nil)
	b := newBrowser(t, s)
	verifier, challenge := pkce()
	redirect := "http://127.0.0.1:43123/callback"
	p := b.get(authorizeURL(s, clientID, redirect, "urn:matrix:client:api:* urn:matrix:client:device:"+randomDeviceID(), "st", challenge,
		url.Values{"prompt": {"create"}}))
	f := formTo(t, p, "/_lattice/account/register")
	if _, ok := f.Values["email"]; !ok {
		t.Fatalf("no email field on the register page:\n%s", p.Body)
	}
	f.Values.Set("username", "rita")
	f.Values.Set("password", "a long password")
	f.Values.Set("password2", "a long password")
	f.Values.Set("token", "letmein")
	f.Values.Set("email", "not an address")
	if p := b.post(f.Action, f.Values); p.Status != 400 {
		t.Errorf("bad address: %d", p.Status)
	}
	f.Values.Set("email", "Rita@example.org")
	check := b.post(f.Action, f.Values)
	cf := formTo(t, check, "/_lattice/account/register/email")
	if check.Status != 200 || !strings.Contains(check.Body, "Rita@example.org") {
		t.Fatalf("check your mail page: %d %s", check.Status, check.Body)
	}
	if strings.Contains(check.Body, "a long password") {
		t.Errorf("the check your mail page holds the password in clear")
	}
	available := func() bool {
		return s.Do(t, "", "GET", "/_matrix/client/v3/register/available?username=rita", nil).Status == 200
	}
	if p := b.post(cf.Action, cf.Values); p.Status != 400 || !strings.Contains(p.Body, "not confirmed yet") || !available() {
		t.Fatalf("continue before confirming: %d %s", p.Status, p.Body)
	}
	if status, page, _ := confirmLink(t, sink.wait(t, "rita@example.org").link(t)); status != 200 {
		t.Fatalf("confirm: %d %s", status, page)
	}
	// A made-up client secret, a wrong token, a missing CSRF token: no account.
	bad := url.Values{}
	for k, v := range cf.Values {
		bad[k] = append([]string(nil), v...)
	}
	bad.Set("client_secret", "madeup")
	if p := b.post(cf.Action, bad); p.Status != 400 || !available() {
		t.Errorf("made-up session: %d", p.Status)
	}
	bad = url.Values{}
	for k, v := range cf.Values {
		bad[k] = append([]string(nil), v...)
	}
	bad.Set("token", "wrong")
	if p := b.post(cf.Action, bad); p.Status != 403 || !available() {
		t.Errorf("wrong registration token: %d %s", p.Status, p.Body)
	}
	bad.Set("token", "letmein")
	bad.Del("csrf")
	if p := b.post(cf.Action, bad); p.Status != 403 || !available() {
		t.Errorf("no CSRF token: %d", p.Status)
	}
	p = b.post(cf.Action, cf.Values)
	if !strings.Contains(p.Body, "@rita:localhost") {
		t.Fatalf("consent after registering: %d %s", p.Status, p.Body)
	}
	code, _ := codeFrom(t, b.consent(p, "allow"))
	tok := tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {redirect}, "client_id": {clientID}, "code_verifier": {verifier}})
	if tok.Status != 200 {
		t.Fatalf("exchange: %d %s", tok.Status, tok.Raw)
	}
	if r := s.Do(t, str(tok.Body, "access_token"), "GET", "/_matrix/client/v3/account/3pid", nil); !strings.Contains(string(r.Raw), `"address":"rita@example.org"`) {
		t.Errorf("3pids: %s", r.Raw)
	}
	// The session made one account: another name with it (and a fresh CSRF token) fails.
	cf.Values.Set("csrf", formTo(t, b.get("/_lattice/account/register"), "/_lattice/account/register").Values.Get("csrf"))
	cf.Values.Set("username", "rita2")
	if p := b.post(cf.Action, cf.Values); p.Status != 400 || s.Do(t, "", "GET", "/_matrix/client/v3/register/available?username=rita2", nil).Status != 200 {
		t.Errorf("continue again: %d", p.Status)
	}
}

// TestOAuthPagesForgotPassword: the sign-in page links to a page that mails a reset link
// (saying the same whether or not an account has the address); the link's page, once its
// button is pressed, leads to the new password's form; afterwards every session of the
// account is signed out, the new password works, and the form cannot be used twice. Bad
// links and unconfirmed sessions get an error page; the forms need their CSRF token.
func TestOAuthPagesForgotPassword(t *testing.T) {
	sink := startMailSink(t)
	s := startEmailServer(t, sink, emailOptions{requireAtRegistration: true})
	sam := registerWithEmail(t, s, sink, "sam", "sam@example.org")
	b := newBrowser(t, s)
	login := b.get("/_lattice/account/login")
	if !strings.Contains(login.Body, `href="/_lattice/account/password/forgot"`) {
		t.Fatalf("no forgot password link:\n%s", login.Body)
	}
	fp := b.get("/_lattice/account/password/forgot")
	f := formTo(t, fp, "/_lattice/account/password/forgot")
	f.Values.Set("email", "nobody@example.org")
	unknown := b.post(f.Action, f.Values)
	f.Values.Set("email", "sam@example.org")
	noCSRF := url.Values{"email": {"sam@example.org"}}
	if p := b.post(f.Action, noCSRF); p.Status != 403 {
		t.Errorf("forgot form without CSRF: %d", p.Status)
	}
	known := b.post(f.Action, f.Values)
	if unknown.Status != 200 || known.Status != 200 || !strings.Contains(known.Body, "on its way") || !strings.Contains(unknown.Body, "on its way") {
		t.Fatalf("forgot: %d / %d %s", unknown.Status, known.Status, known.Body)
	}
	link := sink.wait(t, "sam@example.org").link(t)
	status, _, loc := confirmLink(t, link)
	if status != http.StatusSeeOther || !strings.HasPrefix(loc, s.URL+"/_lattice/account/password/reset?") {
		t.Fatalf("confirm: %d %q", status, loc)
	}
	lu, _ := url.Parse(loc)
	wrong := lu.Query()
	wrong.Set("client_secret", "guess")
	if p := b.get("/_lattice/account/password/reset?" + wrong.Encode()); p.Status != 400 {
		t.Errorf("reset page with a wrong secret: %d", p.Status)
	}
	rp := b.get(loc)
	rf := formTo(t, rp, "/_lattice/account/password/reset")
	rf.Values.Set("new", "brand new secret")
	rf.Values.Set("new2", "not the same")
	if p := b.post(rf.Action, rf.Values); p.Status != 400 {
		t.Errorf("mismatched: %d", p.Status)
	}
	rf.Values.Set("new2", "brand new secret")
	if p := b.post(rf.Action, url.Values{"email": rf.Values["email"], "client_secret": rf.Values["client_secret"], "new": {"x"}, "new2": {"x"}}); p.Status != 403 {
		t.Errorf("reset form without CSRF: %d", p.Status)
	}
	if p := b.post(rf.Action, rf.Values); p.Status != 200 || !strings.Contains(p.Body, "signed out") {
		t.Fatalf("reset: %d %s", p.Status, p.Body)
	}
	if r := sam.Do("GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 401 {
		t.Errorf("old session after the reset: %d", r.Status)
	}
	if r := s.Do(t, "", "POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": "sam"}, "password": "brand new secret"}); r.Status != 200 {
		t.Errorf("login with the new password: %d %s", r.Status, r.Raw)
	}
	// The browser's sign-in was reset with the password: a fresh CSRF token for the replay.
	rf.Values.Set("csrf", formTo(t, b.get("/_lattice/account/password/forgot"), "/_lattice/account/password/forgot").Values.Get("csrf"))
	if p := b.post(rf.Action, rf.Values); p.Status != 400 {
		t.Errorf("reset form used twice: %d", p.Status)
	}
	if p := b.get(loc); p.Status != 400 {
		t.Errorf("reset page after use: %d", p.Status)
	}
	// A reset page reached without confirming the mail is refused.
	f = formTo(t, b.get("/_lattice/account/password/forgot"), "/_lattice/account/password/forgot")
	f.Values.Set("email", "sam@example.org")
	b.post(f.Action, f.Values)
	m := sink.wait(t, "sam@example.org")
	mu, _ := url.Parse(m.link(t))
	// The next_link is not in the mail; it names the client secret and the address.
	unconfirmed := "/_lattice/account/password/reset?" + url.Values{"client_secret": {mu.Query().Get("client_secret")}, "email": {"sam@example.org"}}.Encode()
	if p := b.get(unconfirmed); p.Status != 400 || !strings.Contains(p.Body, "not confirmed yet") {
		t.Errorf("reset page before confirming: %d %s", p.Status, p.Body)
	}
}

// TestOAuthPagesAccountEmail: the account page lists the account's addresses, adds one
// (mail, link, button, then the confirm page in the signed-in browser) and removes one;
// the forms need their CSRF token.
func TestOAuthPagesAccountEmail(t *testing.T) {
	sink := startMailSink(t)
	s := startEmailServer(t, sink, emailOptions{})
	tia := s.Register(t, "tia")
	b := newBrowser(t, s)
	acc := b.signIn(b.get("/_lattice/account/login?next=/_lattice/account/"), "tia", "correct horse battery")
	if !strings.Contains(acc.Body, "No email address") {
		t.Fatalf("account page: %d %s", acc.Status, acc.Body)
	}
	af := formTo(t, acc, "/_lattice/account/email/add")
	if p := b.post(af.Action, url.Values{"email": {"tia@example.org"}, "csrf": {"forged"}}); p.Status != 403 {
		t.Errorf("add without a valid CSRF token: %d", p.Status)
	}
	af.Values.Set("email", "Tia@example.org")
	if p := b.post(af.Action, af.Values); p.Status != 200 || !strings.Contains(p.Body, "on its way") {
		t.Fatalf("add: %d %s", p.Status, p.Body)
	}
	status, _, loc := confirmLink(t, sink.wait(t, "tia@example.org").link(t))
	if status != http.StatusSeeOther || !strings.HasPrefix(loc, s.URL+"/_lattice/account/email/confirm?") {
		t.Fatalf("confirm link: %d %q", status, loc)
	}
	// Another browser, not signed in, is sent to sign in first.
	if p := newBrowser(t, s).get(loc); !strings.Contains(p.URL, "/_lattice/account/login") {
		t.Errorf("confirm page signed out: %s", p.URL)
	}
	cp := b.get(loc)
	cf := formTo(t, cp, "/_lattice/account/email/confirm")
	if !strings.Contains(cp.Body, "@tia:localhost") {
		t.Errorf("confirm page does not name the account:\n%s", cp.Body)
	}
	if p := b.post(cf.Action, url.Values{"email": cf.Values["email"], "client_secret": cf.Values["client_secret"]}); p.Status != 403 {
		t.Errorf("confirm without CSRF: %d", p.Status)
	}
	added := b.post(cf.Action, cf.Values)
	if added.Status != 200 || !strings.Contains(added.Body, "tia@example.org") {
		t.Fatalf("added: %d %s", added.Status, added.Body)
	}
	if r := tia.MustDo("GET", "/_matrix/client/v3/account/3pid", nil); !strings.Contains(string(r.Raw), `"address":"tia@example.org"`) {
		t.Fatalf("3pids: %s", r.Raw)
	}
	if p := b.post(cf.Action, cf.Values); p.Status != 400 {
		t.Errorf("confirm twice: %d", p.Status)
	}
	df := formTo(t, added, "/_lattice/account/email/delete")
	if p := b.post(df.Action, url.Values{"email": {"tia@example.org"}}); p.Status != 403 {
		t.Errorf("delete without CSRF: %d", p.Status)
	}
	if r := tia.MustDo("GET", "/_matrix/client/v3/account/3pid", nil); !strings.Contains(string(r.Raw), "tia@example.org") {
		t.Fatalf("address gone after a forged delete: %s", r.Raw)
	}
	if p := b.post(df.Action, df.Values); p.Status != 200 || !strings.Contains(p.Body, "No email address") {
		t.Fatalf("delete: %d %s", p.Status, p.Body)
	}
	if r := tia.MustDo("GET", "/_matrix/client/v3/account/3pid", nil); strings.Contains(string(r.Raw), "tia@example.org") {
		t.Errorf("3pids after delete: %s", r.Raw)
	}
}
