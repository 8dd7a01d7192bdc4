package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestEmailRegistration: with registration_requires_email, /register offers only the
// m.login.email.identity stage; the mail (text and HTML) links to the server's public URL,
// the link's page says the address is verified, the registration then succeeds, the address
// is bound to the account, and the address cannot be used again (M_THREEPID_IN_USE).
func TestEmailRegistration(t *testing.T) {
	sink := startMailSink(t)
	srv := startEmailServer(t, sink, emailOptions{requireAtRegistration: true})

	r := srv.Do(t, "", "POST", "/_matrix/client/v3/register", map[string]any{"username": "ann", "password": "correct horse battery"})
	if r.Status != 401 || !strings.Contains(string(r.Raw), `"stages":["m.login.email.identity"]`) {
		t.Fatalf("register without auth: %d %s", r.Status, r.Raw)
	}
	// The dummy stage no longer creates an account.
	if r := srv.Do(t, "", "POST", "/_matrix/client/v3/register", map[string]any{"username": "ann", "password": "correct horse battery",
		"auth": map[string]any{"type": "m.login.dummy"}}); r.Status != 401 {
		t.Fatalf("register with m.login.dummy: %d %s", r.Status, r.Raw)
	}

	start := time.Now()
	r = requestEmailToken(t, srv, "", "register", "Ann@Example.org", "annsecret", 1)
	answered := time.Since(start)
	if r.Status != 200 {
		t.Fatalf("requestToken: %d %s", r.Status, r.Raw)
	}
	sid, _ := r.Body["sid"].(string)
	if sid == "" || r.Body["submit_url"] != srv.URL+"/_lattice/email/submit_token" {
		t.Fatalf("requestToken response: %s", r.Raw)
	}
	m := sink.wait(t, "ann@example.org")
	t.Logf("requestToken answered in %v, the mail arrived %v after the request", answered, time.Since(start))
	if !strings.Contains(m.From, "noreply@lattice.test") || !strings.Contains(m.Subject, "Lattice Test") {
		t.Errorf("mail from %q subject %q", m.From, m.Subject)
	}
	link := m.link(t)
	if !strings.HasPrefix(link, srv.URL+"/_lattice/email/submit_token?") || !strings.Contains(m.HTML, `href="`+strings.ReplaceAll(link, "&", "&amp;")+`"`) {
		t.Errorf("link %q; HTML part:\n%s", link, m.HTML)
	}

	creds := map[string]any{"type": "m.login.email.identity", "threepid_creds": map[string]any{"sid": sid, "client_secret": "annsecret"}}
	body := map[string]any{"username": "ann", "password": "correct horse battery", "auth": creds}
	// Not verified yet: the stage fails with 401 and the flows.
	if r := srv.Do(t, "", "POST", "/_matrix/client/v3/register", body); r.Status != 401 || r.Body["flows"] == nil {
		t.Fatalf("register before the link: %d %s", r.Status, r.Raw)
	}
	status, page, _ := confirmLink(t, link)
	if status != 200 || !strings.Contains(page, "Your email is verified") {
		t.Fatalf("link page: %d %s", status, page)
	}
	r = srv.Do(t, "", "POST", "/_matrix/client/v3/register", body)
	if r.Status != 200 {
		t.Fatalf("register: %d %s", r.Status, r.Raw)
	}
	ann := &Client{t: t, srv: srv, UserID: r.Body["user_id"].(string), Token: r.Body["access_token"].(string)}
	tp := ann.MustDo("GET", "/_matrix/client/v3/account/3pid", nil)
	if !strings.Contains(string(tp.Raw), `"address":"ann@example.org"`) || !strings.Contains(string(tp.Raw), `"medium":"email"`) {
		t.Fatalf("3pids: %s", tp.Raw)
	}
	if caps := ann.MustDo("GET", "/_matrix/client/v3/capabilities", nil); !strings.Contains(string(caps.Raw), `"m.3pid_changes":{"enabled":true}`) {
		t.Errorf("capabilities: %s", caps.Raw)
	}
	// The session served once: a second account cannot reuse it.
	body["username"] = "ann2"
	if r := srv.Do(t, "", "POST", "/_matrix/client/v3/register", body); r.Status == 200 {
		t.Fatalf("second registration with the same session: %d %s", r.Status, r.Raw)
	}
	// The address is in use now, for registration and for adding to an account.
	if r := requestEmailToken(t, srv, "", "register", "ann@example.org", "other", 1); r.Status != 400 || r.ErrCode() != "M_THREEPID_IN_USE" {
		t.Fatalf("requestToken for a bound address: %d %s", r.Status, r.Raw)
	}
	bob := registerWithEmail(t, srv, sink, "bob", "bob@example.org")
	if r := requestEmailToken(t, srv, bob.Token, "account/3pid", "ANN@example.org", "bobsecret", 1); r.Status != 400 || r.ErrCode() != "M_THREEPID_IN_USE" {
		t.Fatalf("3pid requestToken for ann's address: %d %s", r.Status, r.Raw)
	}
	// Logging in with the address works.
	login := srv.Do(t, "", "POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.thirdparty", "medium": "email", "address": "ann@example.org"}, "password": "correct horse battery"})
	if login.Status != 200 || login.Body["user_id"] != ann.UserID {
		t.Fatalf("login by email: %d %s", login.Status, login.Raw)
	}
}

// TestEmailRegistrationWithToken: in registration.mode token with
// registration_requires_email, the flow is the email stage, then the token, in one session:
// the 401 after the email stage lists it as completed, a wrong token keeps the session, and
// the token stage alone (no verified address in the session) is refused.
func TestEmailRegistrationWithToken(t *testing.T) {
	sink := startMailSink(t)
	srv := startEmailServer(t, sink, emailOptions{requireAtRegistration: true, registrationToken: "letmein"})
	reg := func(auth map[string]any) Resp {
		return srv.Do(t, "", "POST", "/_matrix/client/v3/register", map[string]any{"username": "jill", "password": "correct horse battery", "auth": auth})
	}
	first := reg(nil)
	if first.Status != 401 || !strings.Contains(string(first.Raw), `"stages":["m.login.email.identity","m.login.registration_token"]`) {
		t.Fatalf("register without auth: %d %s", first.Status, first.Raw)
	}
	session := first.Body["session"].(string)
	if r := reg(map[string]any{"type": "m.login.registration_token", "token": "letmein", "session": session}); r.Status != 401 {
		t.Fatalf("token stage before the email stage: %d %s", r.Status, r.Raw)
	}
	r := requestEmailToken(t, srv, "", "register", "jill@example.org", "jillsecret", 1)
	if r.Status != 200 {
		t.Fatalf("requestToken: %d %s", r.Status, r.Raw)
	}
	if status, page, _ := confirmLink(t, sink.wait(t, "jill@example.org").link(t)); status != 200 {
		t.Fatalf("link: %d %s", status, page)
	}
	emailAuth := map[string]any{"type": "m.login.email.identity", "session": session,
		"threepid_creds": map[string]any{"sid": r.Body["sid"], "client_secret": "jillsecret"}}
	step := reg(emailAuth)
	if step.Status != 401 || step.Body["session"] != session || !strings.Contains(string(step.Raw), `"completed":["m.login.email.identity"]`) {
		t.Fatalf("after the email stage: %d %s", step.Status, step.Raw)
	}
	wrong := reg(map[string]any{"type": "m.login.registration_token", "token": "nope", "session": session})
	if wrong.Status != 401 || wrong.Body["session"] != session || !strings.Contains(string(wrong.Raw), `"completed":["m.login.email.identity"]`) || wrong.ErrCode() == "" {
		t.Fatalf("wrong token: %d %s", wrong.Status, wrong.Raw)
	}
	done := reg(map[string]any{"type": "m.login.registration_token", "token": "letmein", "session": session})
	if done.Status != 200 {
		t.Fatalf("token stage: %d %s", done.Status, done.Raw)
	}
	jill := &Client{t: t, srv: srv, UserID: done.Body["user_id"].(string), Token: done.Body["access_token"].(string)}
	if tp := jill.MustDo("GET", "/_matrix/client/v3/account/3pid", nil); !strings.Contains(string(tp.Raw), `"address":"jill@example.org"`) {
		t.Fatalf("3pids: %s", tp.Raw)
	}
}

// TestEmailPasswordReset: signed out, a user proves the account's address through the
// mailed link and sets a new password; every device is logged out (their tokens get 401),
// the old password stops working, the new one works, and the session cannot be used twice.
func TestEmailPasswordReset(t *testing.T) {
	sink := startMailSink(t)
	srv := startEmailServer(t, sink, emailOptions{requireAtRegistration: true})
	carol := registerWithEmail(t, srv, sink, "carol", "carol@example.org")
	phone := srv.Login(t, "carol")

	if r := requestEmailToken(t, srv, "", "account/password", "nobody@example.org", "s1", 1); r.Status != 400 || r.ErrCode() != "M_THREEPID_NOT_FOUND" {
		t.Fatalf("reset for an unknown address: %d %s", r.Status, r.Raw)
	}
	r := requestEmailToken(t, srv, "", "account/password", "carol@example.org", "resetsecret", 1)
	if r.Status != 200 {
		t.Fatalf("reset requestToken: %d %s", r.Status, r.Raw)
	}
	sid := r.Body["sid"].(string)
	m := sink.wait(t, "carol@example.org")
	if !strings.Contains(m.Subject, "Reset") {
		t.Errorf("subject %q", m.Subject)
	}
	// Without auth: the email stage is offered.
	noAuth := srv.Do(t, "", "POST", "/_matrix/client/v3/account/password", map[string]any{"new_password": "a new secret"})
	if noAuth.Status != 401 || !strings.Contains(string(noAuth.Raw), "m.login.email.identity") {
		t.Fatalf("reset without auth: %d %s", noAuth.Status, noAuth.Raw)
	}
	body := map[string]any{"new_password": "a new secret", "auth": map[string]any{"type": "m.login.email.identity",
		"threepid_creds": map[string]any{"sid": sid, "client_secret": "resetsecret"}}}
	if r := srv.Do(t, "", "POST", "/_matrix/client/v3/account/password", body); r.Status != 401 {
		t.Fatalf("reset before the link: %d %s", r.Status, r.Raw)
	}
	if status, page, _ := confirmLink(t, m.link(t)); status != 200 || !strings.Contains(page, "Your email is verified") {
		t.Fatalf("link: %d %s", status, page)
	}
	if r := srv.Do(t, "", "POST", "/_matrix/client/v3/account/password", body); r.Status != 200 {
		t.Fatalf("reset: %d %s", r.Status, r.Raw)
	}
	for _, c := range []*Client{carol, phone} {
		if r := c.Do("GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 401 || r.ErrCode() != "M_UNKNOWN_TOKEN" {
			t.Errorf("device %s after the reset: %d %s", c.DeviceID, r.Status, r.Raw)
		}
	}
	login := func(pw string) Resp {
		return srv.Do(t, "", "POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
			"identifier": map[string]any{"type": "m.id.user", "user": "carol"}, "password": pw})
	}
	if r := login("correct horse battery"); r.Status != 403 {
		t.Errorf("old password: %d %s", r.Status, r.Raw)
	}
	if r := login("a new secret"); r.Status != 200 {
		t.Errorf("new password: %d %s", r.Status, r.Raw)
	}
	body["new_password"] = "a third secret"
	if r := srv.Do(t, "", "POST", "/_matrix/client/v3/account/password", body); r.Status != 401 {
		t.Errorf("reset again with the used session: %d %s", r.Status, r.Raw)
	}
}

// TestEmailAddAndDelete: a signed-in user adds an address, verified by typing the mailed
// code into the client (POST submit_url), with the password stage; GET /account/3pid lists
// it; deleting it removes it, and a login by it fails afterwards.
func TestEmailAddAndDelete(t *testing.T) {
	sink := startMailSink(t)
	srv := startEmailServer(t, sink, emailOptions{})
	dave := srv.Register(t, "dave")

	r := requestEmailToken(t, srv, dave.Token, "account/3pid", "dave@example.org", "addsecret", 1)
	if r.Status != 200 {
		t.Fatalf("3pid requestToken: %d %s", r.Status, r.Raw)
	}
	sid, submitURL := r.Body["sid"].(string), r.Body["submit_url"].(string)
	m := sink.wait(t, "dave@example.org")
	path := strings.TrimPrefix(submitURL, srv.URL)
	if bad := srv.Do(t, "", "POST", path, map[string]any{"sid": sid, "client_secret": "addsecret", "token": "wrong"}); bad.Status != 400 || bad.ErrCode() != "M_TOKEN_INCORRECT" {
		t.Errorf("wrong token: %d %s", bad.Status, bad.Raw)
	}
	addBody := map[string]any{"sid": sid, "client_secret": "addsecret"}
	if r := dave.Do("POST", "/_matrix/client/v3/account/3pid/add", addBody); r.Status != 401 || !strings.Contains(string(r.Raw), "m.login.password") {
		t.Fatalf("add without auth: %d %s", r.Status, r.Raw)
	}
	addBody["auth"] = map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "dave"}, "password": "correct horse battery"}
	if r := dave.Do("POST", "/_matrix/client/v3/account/3pid/add", addBody); r.Status != 400 || r.ErrCode() != "M_THREEPID_AUTH_FAILED" {
		t.Fatalf("add before validation: %d %s", r.Status, r.Raw)
	}
	ok := srv.Do(t, "", "POST", path, map[string]any{"sid": sid, "client_secret": "addsecret", "token": m.code(t)})
	if ok.Status != 200 || ok.Body["success"] != true {
		t.Fatalf("submit_url: %d %s", ok.Status, ok.Raw)
	}
	dave.MustDo("POST", "/_matrix/client/v3/account/3pid/add", addBody)
	if tp := dave.MustDo("GET", "/_matrix/client/v3/account/3pid", nil); !strings.Contains(string(tp.Raw), `"address":"dave@example.org"`) {
		t.Fatalf("3pids after add: %s", tp.Raw)
	}
	loginByEmail := func() Resp {
		return srv.Do(t, "", "POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
			"identifier": map[string]any{"type": "m.id.thirdparty", "medium": "email", "address": "dave@example.org"}, "password": "correct horse battery"})
	}
	if r := loginByEmail(); r.Status != 200 {
		t.Fatalf("login by the added address: %d %s", r.Status, r.Raw)
	}
	if r := dave.Do("POST", "/_matrix/client/v3/account/3pid/unbind", map[string]any{"medium": "email", "address": "dave@example.org"}); r.Status != 200 || r.Body["id_server_unbind_result"] != "no-support" {
		t.Errorf("unbind: %d %s", r.Status, r.Raw)
	}
	del := dave.MustDo("POST", "/_matrix/client/v3/account/3pid/delete", map[string]any{"medium": "email", "address": "Dave@example.org"})
	if del.Body["id_server_unbind_result"] != "no-support" {
		t.Errorf("delete: %s", del.Raw)
	}
	if tp := dave.MustDo("GET", "/_matrix/client/v3/account/3pid", nil); strings.Contains(string(tp.Raw), "dave@example.org") {
		t.Fatalf("3pids after delete: %s", tp.Raw)
	}
	if r := loginByEmail(); r.Status != 403 {
		t.Errorf("login by the deleted address: %d %s", r.Status, r.Raw)
	}
	if r := dave.Do("POST", "/_matrix/client/v3/account/3pid/delete", map[string]any{"medium": "email", "address": "dave@example.org"}); r.Status != 400 || r.ErrCode() != "M_THREEPID_NOT_FOUND" {
		t.Errorf("deleting it again: %d %s", r.Status, r.Raw)
	}
}

// TestEmailSendAttempt: the same client_secret, address and send_attempt give the same sid
// and no second mail; a higher send_attempt mails a new link under the same sid, and the
// older link stops working.
func TestEmailSendAttempt(t *testing.T) {
	sink := startMailSink(t)
	srv := startEmailServer(t, sink, emailOptions{})
	first := requestEmailToken(t, srv, "", "register", "erin@example.org", "erinsecret", 1)
	again := requestEmailToken(t, srv, "", "register", "erin@example.org", "erinsecret", 1)
	if first.Status != 200 || again.Status != 200 || first.Body["sid"] != again.Body["sid"] {
		t.Fatalf("same attempt: %s / %s", first.Raw, again.Raw)
	}
	old := sink.wait(t, "erin@example.org")
	time.Sleep(time.Second) // a second mail would be delivered within this
	if n := sink.count("erin@example.org"); n != 0 {
		t.Fatalf("%d more mails for a repeated send_attempt", n)
	}
	next := requestEmailToken(t, srv, "", "register", "erin@example.org", "erinsecret", 2)
	if next.Status != 200 || next.Body["sid"] != first.Body["sid"] {
		t.Fatalf("next attempt: %s", next.Raw)
	}
	fresh := sink.wait(t, "erin@example.org")
	if status, page := getPage(t, old.link(t)); status != 400 || !strings.Contains(page, "This link does not work") {
		t.Errorf("replaced link: %d %s", status, page)
	}
	if status, page, _ := confirmLink(t, fresh.link(t)); status != 200 || !strings.Contains(page, "Your email is verified") {
		t.Errorf("new link: %d %s", status, page)
	}
	// With a next_link, the verified link sends the user there.
	nl := srv.Do(t, "", "POST", "/_matrix/client/v3/register/email/requestToken", map[string]any{"email": "erin2@example.org",
		"client_secret": "nl", "send_attempt": 1, "next_link": "https://app.example.org/welcome"})
	if nl.Status != 200 {
		t.Fatalf("requestToken with next_link: %d %s", nl.Status, nl.Raw)
	}
	// Only the first confirmation goes there; opening the link does not.
	nlLink := sink.wait(t, "erin2@example.org").link(t)
	if status, _ := getPage(t, nlLink); status != http.StatusOK {
		t.Errorf("link with next_link: %d", status)
	}
	if status, _, loc := confirmLink(t, nlLink); status != http.StatusSeeOther || loc != "https://app.example.org/welcome" {
		t.Errorf("confirming a link with next_link: %d %q", status, loc)
	}
	if status, page := getPage(t, nlLink); status != http.StatusOK || !strings.Contains(page, "Your email is verified") {
		t.Errorf("the link after confirming: %d %s", status, page)
	}
	lu, _ := url.Parse(nlLink)
	replay, err := noRedirect.PostForm(srv.URL+"/_lattice/email/submit_token", lu.Query())
	if err != nil {
		t.Fatal(err)
	}
	replay.Body.Close()
	if replay.StatusCode != http.StatusOK || replay.Header.Get("Location") != "" {
		t.Errorf("confirming it again: %d %q", replay.StatusCode, replay.Header.Get("Location"))
	}
	// A different client secret is a different session.
	other := requestEmailToken(t, srv, "", "register", "erin@example.org", "othersecret", 1)
	if other.Status != 200 || other.Body["sid"] == first.Body["sid"] {
		t.Errorf("other secret: %s", other.Raw)
	}
	for _, bad := range []map[string]any{
		{"email": "erin@example.org", "client_secret": "bad secret!", "send_attempt": 1},
		{"email": "not an address", "client_secret": "s", "send_attempt": 1},
		{"email": "erin@example.org", "client_secret": "s"},
	} {
		if r := srv.Do(t, "", "POST", "/_matrix/client/v3/register/email/requestToken", bad); r.Status != 400 {
			t.Errorf("requestToken %v: %d %s", bad, r.Status, r.Raw)
		}
	}
}

// TestEmailLinksAndLimits: bad, incomplete and expired links get a 400 HTML page that says
// what is wrong (never a 500); 100 reset requests for one address are refused with 429
// M_LIMIT_EXCEEDED and retry_after_ms after the burst, and then so are requests for other
// addresses from the same client address.
func TestEmailLinksAndLimits(t *testing.T) {
	sink := startMailSink(t)
	srv := startEmailServer(t, sink, emailOptions{requireAtRegistration: true, tokenLifetime: "2s"})
	base := srv.URL + "/_lattice/email/submit_token"
	for _, link := range []string{base, base + "?sid=nope&client_secret=x&token=y", base + "?sid=%ZZ"} {
		if status, page := getPage(t, link); status != 400 || !strings.Contains(page, "This link does not work") {
			t.Errorf("%s: %d %s", link, status, page)
		}
	}
	r := requestEmailToken(t, srv, "", "register", "frank@example.org", "franksecret", 1)
	if r.Status != 200 {
		t.Fatalf("requestToken: %d %s", r.Status, r.Raw)
	}
	link := sink.wait(t, "frank@example.org").link(t)
	u, _ := url.Parse(link)
	q := u.Query()
	q.Set("token", "tampered")
	u.RawQuery = q.Encode()
	if status, page := getPage(t, u.String()); status != 400 || !strings.Contains(page, "This link does not work") {
		t.Errorf("tampered link: %d %s", status, page)
	}
	time.Sleep(2500 * time.Millisecond) // token_lifetime is 2s
	if status, page := getPage(t, link); status != 400 || !strings.Contains(page, "This link has expired") {
		t.Errorf("expired link: %d %s", status, page)
	}
	expired := srv.Do(t, "", "POST", "/_lattice/email/submit_token", map[string]any{"sid": r.Body["sid"], "client_secret": "franksecret", "token": "x"})
	if expired.Status != 400 || expired.ErrCode() != "M_SESSION_EXPIRED" {
		t.Errorf("submit_url for an expired session: %d %s", expired.Status, expired.Raw)
	}

	// The account whose address is asked for (registration costs one more request).
	registerWithEmail(t, srv, sink, "gina", "gina@example.org")
	var ok, limited int
	for i := 1; i <= 100; i++ {
		r := requestEmailToken(t, srv, "", "account/password", "gina@example.org", "ginasecret", i)
		switch {
		case r.Status == 200:
			ok++
		case r.Status == http.StatusTooManyRequests && r.ErrCode() == "M_LIMIT_EXCEEDED":
			if ms, _ := r.Body["retry_after_ms"].(float64); ms <= 0 {
				t.Fatalf("429 without retry_after_ms: %s", r.Raw)
			}
			limited++
		default:
			t.Fatalf("reset request %d: %d %s", i, r.Status, r.Raw)
		}
	}
	if ok != 4 || limited != 96 { // address_burst 5, one spent on the registration
		t.Errorf("100 reset requests: %d accepted, %d limited", ok, limited)
	}
	// The client address's allowance is spent too: another address is refused from it.
	if r := requestEmailToken(t, srv, "", "register", "henry@example.org", "henrysecret", 1); r.Status != 429 {
		t.Errorf("request from the same client address: %d %s", r.Status, r.Raw)
	}
}

// TestEmailNotConfigured: without an email section nothing changes: the requestToken
// endpoints answer 400 M_THREEPID_MEDIUM_NOT_SUPPORTED, users cannot add or delete
// addresses, and m.3pid_changes is off.
func TestEmailNotConfigured(t *testing.T) {
	srv := StartServer(t)
	ivy := srv.Register(t, "ivy")
	for _, kind := range []string{"register", "account/password", "account/3pid"} {
		r := requestEmailToken(t, srv, ivy.Token, kind, "ivy@example.org", "s", 1)
		if r.Status != 400 || r.ErrCode() != "M_THREEPID_MEDIUM_NOT_SUPPORTED" {
			t.Errorf("%s requestToken: %d %s", kind, r.Status, r.Raw)
		}
	}
	if r := ivy.Do("POST", "/_matrix/client/v3/account/3pid/add", map[string]any{"sid": "x", "client_secret": "y"}); r.Status != 403 {
		t.Errorf("3pid/add: %d %s", r.Status, r.Raw)
	}
	if r := ivy.Do("POST", "/_matrix/client/v3/account/3pid/delete", map[string]any{"medium": "email", "address": "ivy@example.org"}); r.Status != 403 {
		t.Errorf("3pid/delete: %d %s", r.Status, r.Raw)
	}
	if caps := ivy.MustDo("GET", "/_matrix/client/v3/capabilities", nil); !strings.Contains(string(caps.Raw), `"m.3pid_changes":{"enabled":false}`) {
		t.Errorf("capabilities: %s", caps.Raw)
	}
	// Signed out, /account/password still wants an access token.
	if r := srv.Do(t, "", "POST", "/_matrix/client/v3/account/password", map[string]any{"new_password": "x"}); r.Status != 401 || r.ErrCode() != "M_MISSING_TOKEN" {
		t.Errorf("password without a token: %d %s", r.Status, r.Raw)
	}
	if r := srv.Do(t, "", "GET", "/_lattice/email/submit_token?sid=a&client_secret=b&token=c", nil); r.Status != 404 {
		t.Errorf("link route without email: %d", r.Status)
	}
}

// TestEmailSMTPHung: an SMTP server that accepts connections and never answers does not slow
// requests down (mails go out behind them), and each delivery attempt gives up after
// send_timeout; the server keeps answering.
func TestEmailSMTPHung(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, silent
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	srv := startEmailServerAt(t, ln.Addr().String(), emailOptions{sendTimeout: "1s"})
	for i := range 3 {
		start := time.Now()
		r := requestEmailToken(t, srv, "", "register", fmt.Sprintf("hung%d@example.org", i), "hung", 1)
		if r.Status != 200 {
			t.Fatalf("requestToken: %d %s", r.Status, r.Raw)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("requestToken took %v with a hung SMTP server", d)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(srv.Log(), "mail not sent") {
		if time.Now().After(deadline) {
			t.Fatalf("no delivery attempt gave up; log:\n%s", srv.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := srv.Do(t, "", "GET", "/_matrix/client/versions", nil); r.Status != 200 {
		t.Errorf("versions: %d", r.Status)
	}
}

// TestEmailLinkOpenedIsNotConfirmed: opening the mailed link (as a mail scanner or a link
// preview does, any number of times) validates nothing: the page asks the user to press a
// button, and only its POST verifies the address. The page is not cached and sends no
// Referer.
func TestEmailLinkOpenedIsNotConfirmed(t *testing.T) {
	sink := startMailSink(t)
	srv := startEmailServer(t, sink, emailOptions{requireAtRegistration: true})
	registerWithEmail(t, srv, sink, "kim", "kim@example.org")
	r := requestEmailToken(t, srv, "", "account/password", "kim@example.org", "kimreset", 1)
	if r.Status != 200 {
		t.Fatalf("requestToken: %d %s", r.Status, r.Raw)
	}
	link := sink.wait(t, "kim@example.org").link(t)
	for range 3 {
		status, body := getPage(t, link)
		if status != 200 || !strings.Contains(body, "<button") || strings.Contains(body, "Your email is verified") {
			t.Fatalf("link page: %d %s", status, body)
		}
	}
	body := map[string]any{"new_password": "scanner chose this", "auth": map[string]any{"type": "m.login.email.identity",
		"threepid_creds": map[string]any{"sid": r.Body["sid"], "client_secret": "kimreset"}}}
	if r := srv.Do(t, "", "POST", "/_matrix/client/v3/account/password", body); r.Status != 401 {
		t.Fatalf("reset after the link was only opened: %d %s", r.Status, r.Raw)
	}
	if status, page, _ := confirmLink(t, link); status != 200 || !strings.Contains(page, "Your email is verified") {
		t.Fatalf("confirm: %d %s", status, page)
	}
	if r := srv.Do(t, "", "POST", "/_matrix/client/v3/account/password", body); r.Status != 200 {
		t.Fatalf("reset after confirming: %d %s", r.Status, r.Raw)
	}
	// A form with a wrong token is refused with the error page.
	u, _ := url.Parse(link)
	q := u.Query()
	q.Set("token", "wrong")
	resp, err := noRedirect.PostForm(srv.URL+"/_lattice/email/submit_token", q)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("form with a wrong token: %d", resp.StatusCode)
	}
}

// TestEmailSessionMakesOneAccount: four concurrent registrations with one verified session
// make exactly one account, bound to the address; the others fail and leave no account
// behind (their user names stay available), and in token mode a failed registration does
// not use up the registration token.
func TestEmailSessionMakesOneAccount(t *testing.T) {
	sink := startMailSink(t)
	srv := startEmailServer(t, sink, emailOptions{requireAtRegistration: true})
	r := requestEmailToken(t, srv, "", "register", "lou@example.org", "lousecret", 1)
	if r.Status != 200 {
		t.Fatalf("requestToken: %d %s", r.Status, r.Raw)
	}
	if status, page, _ := confirmLink(t, sink.wait(t, "lou@example.org").link(t)); status != 200 {
		t.Fatalf("confirm: %d %s", status, page)
	}
	creds := map[string]any{"type": "m.login.email.identity", "threepid_creds": map[string]any{"sid": r.Body["sid"], "client_secret": "lousecret"}}
	var wg sync.WaitGroup
	results := make([]Resp, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = srv.Do(t, "", "POST", "/_matrix/client/v3/register", map[string]any{
				"username": fmt.Sprintf("lou%d", i), "password": "correct horse battery", "auth": creds})
		}()
	}
	wg.Wait()
	var made []int
	for i, res := range results {
		switch {
		case res.Status == 200:
			made = append(made, i)
		case res.Status >= 400 && res.Status < 500 && res.ErrCode() != "":
		default:
			t.Errorf("registration %d: %d %s", i, res.Status, res.Raw)
		}
	}
	if len(made) != 1 {
		t.Fatalf("%d accounts made with one session: %v", len(made), made)
	}
	for i := range results {
		avail := srv.Do(t, "", "GET", fmt.Sprintf("/_matrix/client/v3/register/available?username=lou%d", i), nil)
		if (i == made[0]) != (avail.Status == 400) {
			t.Errorf("lou%d available: %d %s", i, avail.Status, avail.Raw)
		}
	}
	lou := &Client{t: t, srv: srv, Token: results[made[0]].Body["access_token"].(string)}
	if tp := lou.MustDo("GET", "/_matrix/client/v3/account/3pid", nil); !strings.Contains(string(tp.Raw), `"address":"lou@example.org"`) {
		t.Errorf("3pids: %s", tp.Raw)
	}
}

// TestEmailSessionPurpose: a session serves the purpose it was asked for: one verified for
// registration is refused by /account/3pid/add; asking again with a higher send_attempt
// starts the session over, unverified, for the new purpose.
func TestEmailSessionPurpose(t *testing.T) {
	sink := startMailSink(t)
	srv := startEmailServer(t, sink, emailOptions{})
	mo := srv.Register(t, "max")
	r := requestEmailToken(t, srv, "", "register", "max@example.org", "maxsecret", 1)
	if r.Status != 200 {
		t.Fatalf("requestToken: %d %s", r.Status, r.Raw)
	}
	if status, page, _ := confirmLink(t, sink.wait(t, "max@example.org").link(t)); status != 200 {
		t.Fatalf("confirm: %d %s", status, page)
	}
	add := map[string]any{"sid": r.Body["sid"], "client_secret": "maxsecret", "auth": map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": "max"}, "password": "correct horse battery"}}
	if r := mo.Do("POST", "/_matrix/client/v3/account/3pid/add", add); r.Status != 400 || r.ErrCode() != "M_THREEPID_AUTH_FAILED" {
		t.Fatalf("3pid/add with a registration session: %d %s", r.Status, r.Raw)
	}
	// The same pair asked again for adding: the verification does not carry over.
	again := requestEmailToken(t, srv, mo.Token, "account/3pid", "max@example.org", "maxsecret", 2)
	if again.Status != 200 || again.Body["sid"] != r.Body["sid"] {
		t.Fatalf("requestToken again: %d %s", again.Status, again.Raw)
	}
	m := sink.wait(t, "max@example.org")
	if r := mo.Do("POST", "/_matrix/client/v3/account/3pid/add", add); r.Status != 400 || r.ErrCode() != "M_THREEPID_AUTH_FAILED" {
		t.Fatalf("3pid/add before confirming the new mail: %d %s", r.Status, r.Raw)
	}
	if status, page, _ := confirmLink(t, m.link(t)); status != 200 {
		t.Fatalf("confirm: %d %s", status, page)
	}
	mo.MustDo("POST", "/_matrix/client/v3/account/3pid/add", add)
}

// TestEmailAddressChecksAndLimits: IP-literal and dotless mail domains are refused; the
// per-address allowance counts only mails sent (requests refused for another reason do not
// spend it) and is kept per client address: one client using it up does not stop another
// from getting a mail for that address.
func TestEmailAddressChecksAndLimits(t *testing.T) {
	sink := startMailSink(t)
	srv := startEmailServer(t, sink, emailOptions{addressBurst: 2, ipBurst: 50})
	for _, addr := range []string{"a@[127.0.0.1]", "a@b", "a@127.0.0.1", "a@localhost", "a@-x.example.org"} {
		if r := requestEmailToken(t, srv, "", "register", addr, "s", 1); r.Status != 400 || r.ErrCode() != "M_INVALID_PARAM" {
			t.Errorf("%s: %d %s", addr, r.Status, r.Raw)
		}
	}
	// Refused requests (no account has the address) spend nothing.
	for i := range 5 {
		if r := requestEmailToken(t, srv, "", "account/password", "nia@example.org", "s", i+1); r.Status != 400 {
			t.Fatalf("reset for an unknown address: %d %s", r.Status, r.Raw)
		}
	}
	registerWithEmail(t, srv, sink, "nia", "nia@example.org") // one mail
	from := func(ip string) Resp {
		c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: (&net.Dialer{
			LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext}}
		body := fmt.Sprintf(`{"email":"nia@example.org","client_secret":"s%s","send_attempt":1}`, strings.ReplaceAll(ip, ".", ""))
		resp, err := c.Post(srv.URL+"/_matrix/client/v3/account/password/email/requestToken", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return Resp{Status: resp.StatusCode, Raw: b}
	}
	if r := requestEmailToken(t, srv, "", "account/password", "nia@example.org", "r1", 1); r.Status != 200 {
		t.Fatalf("second mail: %d %s", r.Status, r.Raw)
	}
	// The same pair again sends nothing and is not refused.
	if r := requestEmailToken(t, srv, "", "account/password", "nia@example.org", "r1", 1); r.Status != 200 {
		t.Fatalf("repeated attempt: %d %s", r.Status, r.Raw)
	}
	if r := requestEmailToken(t, srv, "", "account/password", "nia@example.org", "r2", 1); r.Status != 429 {
		t.Fatalf("third mail from one client: %d %s", r.Status, r.Raw)
	}
	if r := from("127.0.0.2"); r.Status != 200 {
		t.Fatalf("a mail asked for from another client address: %d %s", r.Status, r.Raw)
	}
}

// TestEmailNextLinkWhitelist: with email.next_link_domain_whitelist set, a next_link on
// another host is refused with M_INVALID_PARAM, and one on a listed host is accepted.
func TestEmailNextLinkWhitelist(t *testing.T) {
	sink := startMailSink(t)
	srv := startEmailServer(t, sink, emailOptions{nextLinkDomains: `["app.example.org"]`})
	ask := func(addr, next string) Resp {
		return srv.Do(t, "", "POST", "/_matrix/client/v3/register/email/requestToken", map[string]any{"email": addr,
			"client_secret": "s", "send_attempt": 1, "next_link": next})
	}
	for _, next := range []string{"https://evil.example.net/", "https://app.example.org.evil.net/", "javascript:alert(1)", "https://user@app.example.org/"} {
		if r := ask("oli@example.org", next); r.Status != 400 || r.ErrCode() != "M_INVALID_PARAM" {
			t.Errorf("next_link %s: %d %s", next, r.Status, r.Raw)
		}
	}
	if r := ask("oli@example.org", "https://APP.example.org/welcome"); r.Status != 200 {
		t.Fatalf("next_link on a listed host: %d %s", r.Status, r.Raw)
	}
	if status, _, loc := confirmLink(t, sink.wait(t, "oli@example.org").link(t)); status != http.StatusSeeOther || loc != "https://APP.example.org/welcome" {
		t.Errorf("confirm: %d %q", status, loc)
	}
}

// TestEmailOptionalAtRegistration: with email configured but not required, /register offers
// the email stage as an alternative flow: a user may register with an address (bound to the
// account) or without.
func TestEmailOptionalAtRegistration(t *testing.T) {
	sink := startMailSink(t)
	srv := startEmailServer(t, sink, emailOptions{})
	r := srv.Do(t, "", "POST", "/_matrix/client/v3/register", map[string]any{"username": "pia", "password": "correct horse battery"})
	if r.Status != 401 || !strings.Contains(string(r.Raw), `{"stages":["m.login.dummy"]}`) || !strings.Contains(string(r.Raw), `{"stages":["m.login.email.identity"]}`) {
		t.Fatalf("flows: %d %s", r.Status, r.Raw)
	}
	pia := registerWithEmail(t, srv, sink, "pia", "pia@example.org")
	if tp := pia.MustDo("GET", "/_matrix/client/v3/account/3pid", nil); !strings.Contains(string(tp.Raw), `"address":"pia@example.org"`) {
		t.Errorf("3pids: %s", tp.Raw)
	}
	srv.Register(t, "quin") // the dummy flow
}

// TestEmailOptionalWithToken: in registration.mode token with email configured but not
// required, the flows are the token alone, or the email stage then the token; the token
// alone still registers.
func TestEmailOptionalWithToken(t *testing.T) {
	sink := startMailSink(t)
	srv := startEmailServer(t, sink, emailOptions{registrationToken: "letmein"})
	r := srv.Do(t, "", "POST", "/_matrix/client/v3/register", map[string]any{"username": "rae", "password": "correct horse battery"})
	if r.Status != 401 || !strings.Contains(string(r.Raw), `{"stages":["m.login.registration_token"]}`) ||
		!strings.Contains(string(r.Raw), `{"stages":["m.login.email.identity","m.login.registration_token"]}`) {
		t.Fatalf("flows: %d %s", r.Status, r.Raw)
	}
	ok := srv.Do(t, "", "POST", "/_matrix/client/v3/register", map[string]any{"username": "rae", "password": "correct horse battery",
		"auth": map[string]any{"type": "m.login.registration_token", "token": "letmein", "session": r.Body["session"]}})
	if ok.Status != 200 {
		t.Fatalf("token alone: %d %s", ok.Status, ok.Raw)
	}
}
