package sso

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/oidctest"
	"github.com/lattice-chat/lattice/storage"
)

// providerDir is the OpenID provider the e2e tests run (oidc-provider under node).
const providerDir = "../e2e/oidcprovider"

// startProvider runs the real OpenID provider of the e2e tests on loopback. Its packages are
// installed by scripts/test.sh (or the e2e test): without them, or without node, the test
// is skipped, and fails under CI.
func startProvider(t *testing.T, redirectURI string, accounts map[string]map[string]any) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(providerDir, "node_modules", "oidc-provider", "package.json"))
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the OpenID provider cannot run (scripts/test.sh installs it): %v", err)
		}
		t.Skipf("the OpenID provider cannot run (scripts/test.sh installs it): %v", err)
	}
	return oidctest.Start(t, node, providerDir, "s3cret", redirectURI, accounts)
}

var (
	testFormRe  = regexp.MustCompile(`(?s)<form[^>]*action="([^"]*)"[^>]*>(.*?)</form>`)
	testInputRe = regexp.MustCompile(`<input[^>]*name="([^"]*)"(?:[^>]*value="([^"]*)")?[^>]*>`)
)

// submitForm posts the first form of body (fetched from base) with fields over its inputs.
func submitForm(t *testing.T, c *http.Client, base *url.URL, body string, fields map[string]string) (*http.Response, string) {
	t.Helper()
	m := testFormRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no form at %s: %.1500s", base, body)
	}
	action, _ := base.Parse(html.UnescapeString(m[1]))
	vals := url.Values{}
	for _, in := range testInputRe.FindAllStringSubmatch(m[2], -1) {
		vals.Set(in[1], html.UnescapeString(in[2]))
	}
	for k, v := range fields {
		vals.Set(k, v)
	}
	resp, err := c.PostForm(action.String(), vals)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestStartSignedInUser: another page of the server (the OAuth sign-in page) starts a sign-in
// with Start and, back at its continuation URL, reads the user with SignedInUser. A reserved
// user ID (an application service's) is skipped.
func TestStartSignedInUser(t *testing.T) {
	var handler http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	defer srv.Close()
	issuer := startProvider(t, srv.URL+CallbackPath, map[string]map[string]any{
		"sub-1": {"preferred_username": "Alice", "name": "Alice"},
	})
	db, err := storage.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "l.db"), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfg := config.Default()
	cfg.ServerName = "test"
	cfg.ClientAPI.PublicBaseURL = srv.URL
	cfg.SSO.Providers = []config.SSOProvider{{ID: "corp", Issuer: issuer, ClientID: "lattice", ClientSecret: "s3cret"}}
	svc := New(&cfg, db, []byte("seed"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	// @alice:test is an application service's: the sign-in gets the next free name.
	svc.SetReserved(func(userID string) bool { return userID == "@alice:test" })

	r := mux.NewRouter()
	svc.Register(r)
	r.HandleFunc("/start", func(w http.ResponseWriter, r *http.Request) {
		if err := svc.Start(w, r, r.URL.Query().Get("idp"), r.URL.Query().Get("continue")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	r.HandleFunc("/continue", func(w http.ResponseWriter, r *http.Request) {
		userID, ok := svc.SignedInUser(r)
		if !ok {
			http.Error(w, "nobody", http.StatusUnauthorized)
			return
		}
		svc.ClearSignedIn(w)
		fmt.Fprintf(w, "signed in: %s (%s)", userID, r.URL.Query().Get("x"))
	})
	handler = r

	if got := svc.Providers(); len(got) != 1 || got[0] != (Provider{ID: "corp", Name: "corp"}) {
		t.Errorf("Providers() = %+v", got)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := c.Get(srv.URL + "/start?idp=corp&continue=" + url.QueryEscape("/continue?x=42"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp, body := submitForm(t, c, resp.Request.URL, string(b), map[string]string{"login": "sub-1", "password": "x"})
	if strings.Contains(body, `value="consent"`) {
		resp, body = submitForm(t, c, resp.Request.URL, body, nil)
	}
	if resp.StatusCode != 200 || body != "signed in: @alice1:test (42)" {
		t.Fatalf("continuation: %d %q", resp.StatusCode, body)
	}
	// The cookie was cleared: the continuation does not sign anyone in again.
	resp, err = c.Get(srv.URL + "/continue")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after ClearSignedIn: %d", resp.StatusCode)
	}

	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/start", nil)
	if err := svc.Start(rec, req, "nope", "/continue"); !errors.Is(err, ErrUnknownProvider) {
		t.Errorf("Start(unknown idp) = %v", err)
	}
	for _, bad := range []string{"https://evil.example/", "//evil.example/x", ""} {
		if err := svc.Start(httptest.NewRecorder(), req, "corp", bad); err == nil {
			t.Errorf("Start(continueURL %q) accepted", bad)
		}
	}
}
