package e2e

import (
	"fmt"
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
	status, page := getPage(t, link)
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
	if status, page := getPage(t, sink.wait(t, "jill@example.org").link(t)); status != 200 {
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
	if status, page := getPage(t, m.link(t)); status != 200 || !strings.Contains(page, "Your email is verified") {
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
	if status, page := getPage(t, fresh.link(t)); status != 200 || !strings.Contains(page, "Your email is verified") {
		t.Errorf("new link: %d %s", status, page)
	}
	// With a next_link, the verified link sends the user there.
	nl := srv.Do(t, "", "POST", "/_matrix/client/v3/register/email/requestToken", map[string]any{"email": "erin2@example.org",
		"client_secret": "nl", "send_attempt": 1, "next_link": "https://app.example.org/welcome"})
	if nl.Status != 200 {
		t.Fatalf("requestToken with next_link: %d %s", nl.Status, nl.Raw)
	}
	noRedirect := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(sink.wait(t, "erin2@example.org").link(t))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://app.example.org/welcome" {
		t.Errorf("link with next_link: %d %q", resp.StatusCode, resp.Header.Get("Location"))
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
