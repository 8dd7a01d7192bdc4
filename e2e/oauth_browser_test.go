package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestOAuthBrowser drives Lattice's OAuth 2.0 pages with a real headless Chromium: a client
// registers, a new account is created with prompt=create, consent is given, the code is
// exchanged, the token used, refreshed and revoked; then the device authorization grant is
// approved in the browser while the test polls the token endpoint. Screenshots of the pages
// go to $LATTICE_SCREENSHOT_DIR when it is set.
func TestOAuthBrowser(t *testing.T) {
	chromium := requireChromium(t)
	s := StartServer(t)

	// The native client's redirect URI is on loopback: the test listens there.
	codes, redirect := nativeClientCallback(t)

	// Dynamic registration of a native and a web client.
	nativeID := nativeClient(t, s, map[string]any{"client_name": "Browser Test App"})
	web := registerOAuthClient(t, s, map[string]any{"client_name": "Web App", "client_uri": "https://web.example.org/",
		"redirect_uris": []string{"https://app.web.example.org/cb"}, "grant_types": []string{"authorization_code", "refresh_token"},
		"response_types": []string{"code"}, "token_endpoint_auth_method": "none", "application_type": "web"})
	if web.Status != 201 {
		t.Fatalf("web client: %d %s", web.Status, web.Raw)
	}

	ctx := startChromium(t, chromium)
	shots := os.Getenv("LATTICE_SCREENSHOT_DIR")
	fail := func(what string, err error) {
		t.Helper()
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		body, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		t.Fatalf("%s: %v (at %s)\n%s", what, err, loc, body)
	}
	// do runs browser steps with a time limit.
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if err := chromedp.Do(c, steps...); err != nil {
			fail(what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			fail("text of "+sel, err)
		}
		return v
	}
	shot := func(name string) {
		t.Helper()
		if shots == "" {
			return
		}
		buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			fail("screenshot", err)
		}
		_ = os.MkdirAll(shots, 0o755)
		if err := os.WriteFile(filepath.Join(shots, "oauth-"+name+".png"), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The sign-in page, for the screenshot and its accessibility basics.
	do("sign-in page", chromedp.Navigate(s.URL+"/_lattice/account/login"), chromedp.WaitVisible(chromedp.CSS("#username")))
	shot("signin")
	if lang, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS("html"), "lang")); err != nil || lang.Value != "en" {
		t.Errorf("lang %v %v", lang, err)
	}
	if label := text(`label[for="username"]`); label != "Username" {
		t.Errorf("username label %q", label)
	}

	// Authorization code + PKCE with registration of a new account.
	verifier, challenge := pkce()
	dev := randomDeviceID()
	authURL := authorizeURL(s, nativeID, redirect, "urn:matrix:client:api:* urn:matrix:client:device:"+dev, "browserstate", challenge, url.Values{"prompt": {"create"}})
	do("registration page", chromedp.Navigate(authURL), chromedp.WaitVisible(chromedp.CSS("#password2")))
	shot("register")
	do("register", chromedp.SendKeys(chromedp.CSS("#username"), "carol"),
		chromedp.SendKeys(chromedp.CSS("#password"), "carol's long password"),
		chromedp.SendKeys(chromedp.CSS("#password2"), "carol's long password"),
		chromedp.Click(chromedp.CSS(`form[action="/_lattice/account/register"] button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS("#client-name")))
	shot("consent")
	if name := text("#client-name"); name != "Browser Test App" {
		t.Errorf("consent names %q", name)
	}
	do("consent", chromedp.Click(chromedp.CSS(`button[value="allow"]`)), chromedp.WaitVisible(chromedp.CSS("#done")))
	var q url.Values
	select {
	case q = <-codes:
	case <-time.After(10 * time.Second):
		t.Fatal("the browser did not come back to the client")
	}
	if q.Get("state") != "browserstate" || q.Get("code") == "" {
		t.Fatalf("callback %v", q)
	}
	tok := tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")},
		"redirect_uri": {redirect}, "client_id": {nativeID}, "code_verifier": {verifier}})
	if tok.Status != 200 {
		t.Fatalf("exchange: %d %s", tok.Status, tok.Raw)
	}
	if r := s.Do(t, str(tok.Body, "access_token"), "GET", "/_matrix/client/v3/account/whoami", nil); str(r.Body, "user_id") != "@carol:localhost" || str(r.Body, "device_id") != dev {
		t.Fatalf("whoami: %d %s", r.Status, r.Raw)
	}
	ref := tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {str(tok.Body, "refresh_token")}, "client_id": {nativeID}})
	if ref.Status != 200 || str(ref.Body, "refresh_token") == str(tok.Body, "refresh_token") {
		t.Fatalf("refresh: %d %s", ref.Status, ref.Raw)
	}
	if r := s.Do(t, str(ref.Body, "access_token"), "GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 200 {
		t.Fatalf("refreshed token: %d", r.Status)
	}

	// The account page lists the session; then the client revokes it.
	do("account page", chromedp.Navigate(s.URL+"/_lattice/account/?action=org.matrix.sessions_list"), chromedp.WaitVisible(chromedp.CSS("#user-id")))
	shot("account")
	if accountText := text("main"); !strings.Contains(accountText, dev) || !strings.Contains(accountText, "@carol:localhost") {
		t.Errorf("account page: %s", accountText)
	}
	if r := tokenRequest(t, s, "/_lattice/oauth2/revoke", url.Values{"token": {str(ref.Body, "access_token")}, "client_id": {nativeID}}); r.Status != 200 {
		t.Fatalf("revoke: %d %s", r.Status, r.Raw)
	}
	if r := s.Do(t, str(ref.Body, "access_token"), "GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 401 {
		t.Errorf("revoked token: %d", r.Status)
	}

	// The device authorization grant, approved in the browser while the test polls.
	dev2 := randomDeviceID()
	da := tokenRequest(t, s, "/_lattice/oauth2/device", url.Values{"client_id": {nativeID}, "scope": {"urn:matrix:client:api:* urn:matrix:client:device:" + dev2}})
	if da.Status != 200 {
		t.Fatalf("device authorization: %d %s", da.Status, da.Raw)
	}
	polled := make(chan Resp, 1)
	go func() {
		interval := time.Duration(da.Body["interval"].(float64)) * time.Second
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(interval) {
			r := tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"},
				"device_code": {str(da.Body, "device_code")}, "client_id": {nativeID}})
			switch str(r.Body, "error") {
			case "authorization_pending":
			case "slow_down":
				interval += 5 * time.Second
			default:
				polled <- r
				return
			}
		}
		polled <- Resp{}
	}()
	do("device code entry", chromedp.Navigate(str(da.Body, "verification_uri")), chromedp.WaitVisible(chromedp.CSS("#user_code")))
	shot("device")
	do("device consent", chromedp.SendKeys(chromedp.CSS("#user_code"), str(da.Body, "user_code")),
		chromedp.Submit(chromedp.CSS("#user_code")), chromedp.WaitVisible(chromedp.CSS(`button[value="allow"]`)),
		chromedp.Click(chromedp.CSS(`button[value="allow"]`)), chromedp.WaitVisible(chromedp.CSS("#message")))
	var r Resp
	select {
	case r = <-polled:
	case <-time.After(70 * time.Second):
		t.Fatal("polling did not end")
	}
	if r.Status != 200 {
		t.Fatalf("device grant token: %d %s", r.Status, r.Raw)
	}
	if w := s.Do(t, str(r.Body, "access_token"), "GET", "/_matrix/client/v3/account/whoami", nil); str(w.Body, "device_id") != dev2 {
		t.Errorf("device grant whoami: %s", w.Raw)
	}
}

// findChromium returns the path of Chromium, or "".
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// startChromium starts a headless Chromium with a fresh profile that makes no connection
// of its own (no background networking, component updates, sync or QUIC).
func startChromium(t *testing.T, path string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("dns-prefetch-disable", true),
		chromedp.WindowSize(900, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// requireChromium returns the path of Chromium, or skips the test when it is not installed.
func requireChromium(t *testing.T) string {
	t.Helper()
	chromium := findChromium()
	if chromium == "" {
		t.Skip("chromium is not installed (scripts/test.sh installs Debian's chromium package)")
	}
	return chromium
}

// nativeClientCallback listens on loopback as a native client's redirect URI does: it
// returns the query of every request to it, and the redirect URI.
func nativeClientCallback(t *testing.T) (<-chan url.Values, string) {
	t.Helper()
	codes := make(chan url.Values, 4)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cb := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		codes <- r.URL.Query()
		fmt.Fprint(w, `<!DOCTYPE html><title>Client</title><p id="done">Signed in, back in the client.</p>`)
	})}
	go func() { _ = cb.Serve(l) }()
	t.Cleanup(func() { cb.Close() })
	return codes, fmt.Sprintf("http://127.0.0.1:%d/callback", l.Addr().(*net.TCPAddr).Port)
}
