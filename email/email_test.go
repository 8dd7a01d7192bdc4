package email

import (
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/config"
)

func TestCheckRequest(t *testing.T) {
	for _, tc := range []struct {
		req     Request
		want    string // canonical address, or "" for M_INVALID_PARAM
		comment string
	}{
		{Request{Email: "Ann@Example.org", ClientSecret: "s3cret.=_-"}, "ann@example.org", "lower-cased"},
		{Request{Email: "ann@example.org", ClientSecret: "bad secret"}, "", "space in the secret"},
		{Request{Email: "ann@example.org", ClientSecret: strings.Repeat("a", 256)}, "", "secret too long"},
		{Request{Email: "Ann <ann@example.org>", ClientSecret: "s"}, "", "a display name"},
		{Request{Email: "ann@example.org\r\nBcc: eve@example.org", ClientSecret: "s"}, "", "header injection"},
		{Request{Email: "ann", ClientSecret: "s"}, "", "no domain"},
		{Request{Email: "ann@example.org", ClientSecret: "s", SendAttempt: -1}, "", "negative attempt"},
		{Request{Email: "ann@[127.0.0.1]", ClientSecret: "s"}, "", "IP literal"},
		{Request{Email: "ann@127.0.0.1", ClientSecret: "s"}, "", "IP address"},
		{Request{Email: "ann@localhost", ClientSecret: "s"}, "", "dotless domain"},
		{Request{Email: "ann@a..org", ClientSecret: "s"}, "", "empty label"},
	} {
		got, err := checkRequest(tc.req)
		if tc.want == "" {
			if me, ok := err.(spec.MatrixError); !ok || me.ErrCode != spec.ErrorInvalidParam {
				t.Errorf("%s: err %v, want M_INVALID_PARAM", tc.comment, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %q %v, want %q", tc.comment, got, err, tc.want)
		}
	}
}

func TestCheckNextLink(t *testing.T) {
	open := &Service{}
	listed := &Service{cfg: config.Email{NextLinkDomainWhitelist: []string{"app.example.org"}}}
	for _, tc := range []struct {
		s    *Service
		next string
		ok   bool
	}{
		{open, "", true},
		{open, "https://anything.example.net/x", true},
		{open, "javascript:alert(1)", false},
		{open, "https://u:p@app.example.org/", false},
		{open, "//app.example.org/", false},
		{listed, "https://app.example.org/done", true},
		{listed, "http://APP.example.org:8080/done", true},
		{listed, "https://app.example.org.evil.net/", false},
		{listed, "https://evil.net/?app.example.org", false},
	} {
		err := tc.s.checkNextLink(tc.next)
		if (err == nil) != tc.ok {
			t.Errorf("%q (whitelist %v): %v", tc.next, tc.s.cfg.NextLinkDomainWhitelist, err)
		}
	}
}

// TestVerificationMail: both parts carry the link to the public URL and the code; the HTML
// part escapes what it shows.
func TestVerificationMail(t *testing.T) {
	cfg := config.Default()
	cfg.ClientAPI.PublicBaseURL = "https://matrix.example.org/"
	cfg.Email.SMTPHost, cfg.Email.AppName, cfg.Email.TokenLifetime = "localhost", "<Chat & Co>", 30*time.Minute
	s := New(&cfg, nil, nil)
	for _, p := range []Purpose{PurposeRegister, PurposeReset, PurposeAdd} {
		m, err := s.verificationMail(p, "ann@example.org", "SID", "sec=ret", "TOKEN")
		if err != nil {
			t.Fatal(err)
		}
		link := "https://matrix.example.org/_lattice/email/submit_token?client_secret=sec%3Dret&sid=SID&token=TOKEN"
		if !strings.Contains(m.text, link) || !strings.Contains(m.text, "TOKEN") || !strings.Contains(m.text, "works for 30 minutes.") {
			t.Errorf("%s text:\n%s", p, m.text)
		}
		if !strings.Contains(m.html, strings.ReplaceAll(link, "&", "&amp;")) || !strings.Contains(m.html, "&lt;Chat &amp; Co&gt;") {
			t.Errorf("%s html:\n%s", p, m.html)
		}
		if m.to != "ann@example.org" || !strings.Contains(m.subject, "<Chat & Co>") {
			t.Errorf("%s: to %q subject %q", p, m.to, m.subject)
		}
	}
}

func TestLifetime(t *testing.T) {
	for d, want := range map[time.Duration]string{time.Hour: "1 hour", 30 * time.Minute: "30 minutes",
		90 * time.Minute: "90 minutes", 2 * time.Second: "2 seconds", 24 * time.Hour: "24 hours"} {
		if got := lifetime(d); got != want {
			t.Errorf("lifetime(%v) = %q, want %q", d, got, want)
		}
	}
}
