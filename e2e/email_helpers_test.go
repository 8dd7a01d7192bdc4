package e2e

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// mailSink is a real SMTP server on loopback (emersion/go-smtp) that keeps every mail it
// receives, for the tests of the mails Lattice sends.
type mailSink struct {
	Addr string
	srv  *smtp.Server

	mu    sync.Mutex // guards mails
	mails []sentMail
	added chan struct{}
}

// sentMail is a received mail, parsed.
type sentMail struct {
	From, To, Subject string
	Text, HTML        string
	Header            mail.Header
}

func startMailSink(t *testing.T) *mailSink {
	t.Helper()
	sink := &mailSink{added: make(chan struct{}, 1000)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &sinkSession{sink: sink}, nil
	}))
	srv.Domain = "localhost"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sink.Addr, sink.srv = ln.Addr().String(), srv
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return sink
}

type sinkSession struct {
	sink     *mailSink
	from, to string
}

func (s *sinkSession) Reset()        { s.from, s.to = "", "" }
func (s *sinkSession) Logout() error { return nil }
func (s *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = to
	return nil
}
func (s *sinkSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m, err := parseMail(raw)
	if err != nil {
		return err
	}
	m.From, m.To = s.from, s.to
	s.sink.mu.Lock()
	s.sink.mails = append(s.sink.mails, m)
	s.sink.mu.Unlock()
	s.sink.added <- struct{}{}
	return nil
}

// parseMail reads a multipart/alternative mail's text and HTML parts.
func parseMail(raw []byte) (sentMail, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return sentMail{}, err
	}
	dec := new(mime.WordDecoder)
	subject, _ := dec.DecodeHeader(msg.Header.Get("Subject"))
	out := sentMail{Subject: subject, Header: msg.Header}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || !strings.HasPrefix(mt, "multipart/") {
		return out, fmt.Errorf("mail is %q, want multipart/alternative", mt)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return out, err
		}
		body, _ := io.ReadAll(p) // quoted-printable is decoded by the reader
		if p.Header.Get("Content-Transfer-Encoding") == "base64" {
			body, _ = base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(body)))
		}
		switch ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); ct {
		case "text/plain":
			out.Text = string(body)
		case "text/html":
			out.HTML = string(body)
		}
	}
	return out, nil
}

// wait returns the next mail to addr that arrives within 15 seconds, or fails the test.
func (s *mailSink) wait(t *testing.T, to string) sentMail {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		s.mu.Lock()
		for i, m := range s.mails {
			if strings.EqualFold(m.To, to) {
				s.mails = append(s.mails[:i], s.mails[i+1:]...)
				s.mu.Unlock()
				return m
			}
		}
		s.mu.Unlock()
		select {
		case <-s.added:
		case <-deadline:
			t.Fatalf("no mail to %s arrived", to)
		}
	}
}

// count returns how many mails to addr are held (not taken by wait).
func (s *mailSink) count(to string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.mails {
		if strings.EqualFold(m.To, to) {
			n++
		}
	}
	return n
}

var mailLink = regexp.MustCompile(`https?://\S+/_lattice/email/submit_token\?\S+`)
var mailCode = regexp.MustCompile(`enter this code in your app: (\S+)`)

// link returns the validation link of a mail's text part.
func (m sentMail) link(t *testing.T) string {
	t.Helper()
	l := mailLink.FindString(m.Text)
	if l == "" {
		t.Fatalf("no link in the mail:\n%s", m.Text)
	}
	return l
}

// code returns the token a user would type into the client.
func (m sentMail) code(t *testing.T) string {
	t.Helper()
	c := mailCode.FindStringSubmatch(m.Text)
	if c == nil {
		t.Fatalf("no code in the mail:\n%s", m.Text)
	}
	return c[1]
}

// emailOptions are the email settings a test server gets.
type emailOptions struct {
	requireAtRegistration bool
	tokenLifetime         string
	ipBurst               int
	sendTimeout           string
	registrationToken     string // registration.mode token with this token
	nextLinkDomains       string // email.next_link_domain_whitelist, as YAML
	addressBurst          int
}

// startEmailServer starts a server whose email section points at sink.
func startEmailServer(t *testing.T, sink *mailSink, opt emailOptions) *Server {
	t.Helper()
	return startEmailServerAt(t, sink.Addr, opt)
}

// startEmailServerAt starts a server whose email section points at the SMTP server at addr.
func startEmailServerAt(t *testing.T, addr string, opt emailOptions) *Server {
	t.Helper()
	srv := StartServer(t)
	srv.Stop()
	cfg, err := os.ReadFile(srv.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(addr)
	if opt.tokenLifetime == "" {
		opt.tokenLifetime = "1h"
	}
	if opt.sendTimeout == "" {
		opt.sendTimeout = "15s"
	}
	if opt.ipBurst == 0 {
		opt.ipBurst = 20
	}
	repl := []string{
		`  public_base_url: ""`, `  public_base_url: "` + srv.URL + `"`, // client_api's, the first
		`smtp_host: ""`, `smtp_host: "` + host + `"`,
		`smtp_port: 587`, `smtp_port: ` + port,
		`tls: "starttls"`, `tls: "none"`,
		`from: ""`, `from: "Lattice Test <noreply@lattice.test>"`,
		`app_name: "Matrix"`, `app_name: "Lattice Test"`,
		`token_lifetime: "1h"`, `token_lifetime: "` + opt.tokenLifetime + `"`,
		`ip_burst: 20`, fmt.Sprintf(`ip_burst: %d`, opt.ipBurst),
		`send_timeout: "15s"`, `send_timeout: "` + opt.sendTimeout + `"`,
		`registration_requires_email: false`, fmt.Sprintf(`registration_requires_email: %v`, opt.requireAtRegistration),
	}
	if opt.nextLinkDomains != "" {
		repl = append(repl, `next_link_domain_whitelist: []`, `next_link_domain_whitelist: `+opt.nextLinkDomains)
	}
	if opt.addressBurst != 0 {
		repl = append(repl, `address_burst: 5`, fmt.Sprintf(`address_burst: %d`, opt.addressBurst))
	}
	if opt.registrationToken != "" {
		repl = append(repl, `mode: "open"`, `mode: "token"`, `  tokens: []`, `  tokens: ["`+opt.registrationToken+`"]`)
	}
	for i := 0; i < len(repl); i += 2 {
		if !bytes.Contains(cfg, []byte(repl[i])) {
			t.Fatalf("config has no %q", repl[i])
		}
		cfg = bytes.Replace(cfg, []byte(repl[i]), []byte(repl[i+1]), 1)
	}
	if err := os.WriteFile(srv.ConfigPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Start()
	return srv
}

// requestEmailToken calls a requestToken endpoint (kind: register, account/password or
// account/3pid) and returns the response.
func requestEmailToken(t *testing.T, srv *Server, token, kind, addr, secret string, attempt int) Resp {
	t.Helper()
	return srv.Do(t, token, "POST", "/_matrix/client/v3/"+kind+"/email/requestToken",
		map[string]any{"email": addr, "client_secret": secret, "send_attempt": attempt})
}

// getPage fetches a link and returns its status and body.
func getPage(t *testing.T, link string) (int, string) {
	t.Helper()
	resp, err := httpClient.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("link page is %q, want text/html", ct)
	}
	if strings.Contains(link, "/_lattice/email/") && (resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Referrer-Policy") != "no-referrer") {
		t.Errorf("link page headers: Cache-Control %q, Referrer-Policy %q", resp.Header.Get("Cache-Control"), resp.Header.Get("Referrer-Policy"))
	}
	return resp.StatusCode, string(b)
}

// noRedirect is an HTTP client that does not follow redirects.
var noRedirect = &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// confirmLink follows a mailed link as a person does: it opens the page and presses its
// button (the form posting the token back). It returns the answer to the button's POST:
// status, body, and Location when it redirects.
func confirmLink(t *testing.T, link string) (int, string, string) {
	t.Helper()
	status, body := getPage(t, link)
	if status != http.StatusOK {
		t.Fatalf("link page: %d %s", status, body)
	}
	f := formTo(t, page{Status: status, URL: link, Body: body}, "/_lattice/email/submit_token")
	u, _ := url.Parse(link)
	u.RawQuery = ""
	resp, err := noRedirect.PostForm(u.String(), f.Values)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Location")
}

// registerWithEmail registers localpart with a verified address through the mailed link.
func registerWithEmail(t *testing.T, srv *Server, sink *mailSink, localpart, addr string) *Client {
	t.Helper()
	secret := "secret-" + localpart
	r := requestEmailToken(t, srv, "", "register", addr, secret, 1)
	if r.Status != 200 {
		t.Fatalf("register requestToken: %d %s", r.Status, r.Raw)
	}
	sid := r.Body["sid"].(string)
	if status, page, _ := confirmLink(t, sink.wait(t, addr).link(t)); status != http.StatusOK {
		t.Fatalf("link: %d %s", status, page)
	}
	reg := srv.Do(t, "", "POST", "/_matrix/client/v3/register", map[string]any{
		"username": localpart, "password": "correct horse battery",
		"auth": map[string]any{"type": "m.login.email.identity", "threepid_creds": map[string]any{"sid": sid, "client_secret": secret}}})
	if reg.Status != 200 {
		t.Fatalf("register: %d %s", reg.Status, reg.Raw)
	}
	return &Client{t: t, srv: srv, UserID: reg.Body["user_id"].(string), DeviceID: reg.Body["device_id"].(string), Token: reg.Body["access_token"].(string)}
}
