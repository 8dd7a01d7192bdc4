package e2e

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestSSOBrowser drives single sign-on with a real headless Chromium and a real OpenID
// provider: the OAuth 2.0 sign-in page's "Sign in with Corp SSO" button, the provider's
// login and consent pages, Lattice's consent page, and the code exchange; then the m.login.sso
// fallback page of user-interactive auth, whose button posts to Lattice and is redirected to
// the provider (what a Content-Security-Policy form-action would break in a browser).
func TestSSOBrowser(t *testing.T) {
	chromium := requireChromium(t)
	s, _, _ := ssoServer(t)

	codes, redirect := nativeClientCallback(t)
	clientID := nativeClient(t, s, map[string]any{"client_name": "SSO Browser App"})

	ctx := startChromium(t, chromium)
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if err := chromedp.Do(c, steps...); err != nil {
			loc, _ := chromedp.Run(ctx, chromedp.Location())
			body, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
			t.Fatalf("%s: %v (at %s)\n%s", what, err, loc, body)
		}
	}
	// atProvider signs in as login on the provider's pages (login, then consent).
	atProvider := func(login string) {
		t.Helper()
		do("provider login page", chromedp.WaitVisible(chromedp.CSS(`input[name="login"]`)),
			chromedp.SendKeys(chromedp.CSS(`input[name="login"]`), login),
			chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "any password"),
			chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
		// The provider's consent page, the first time this browser signs in there: press its
		// button once it shows, until the browser has left the provider's interaction pages.
		deadline := time.Now().Add(30 * time.Second)
		var clicked time.Time
		for time.Now().Before(deadline) {
			state, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.readyState === "complete" && location.pathname.startsWith("/interaction/") ? (document.querySelector('input[value="consent"]') ? "consent" : "wait") : (location.pathname.startsWith("/interaction/") ? "wait" : "left")`))
			if err == nil && state == "left" {
				return
			}
			if err == nil && state == "consent" && time.Since(clicked) > 5*time.Second {
				do("provider consent", chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
				clicked = time.Now()
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatal("the browser did not leave the provider's pages")
	}

	// The OAuth authorization: the sign-in page's provider button, the provider, consent.
	verifier, challenge := pkce()
	dev := randomDeviceID()
	do("sign-in page", chromedp.Navigate(authorizeURL(s, clientID, redirect, "urn:matrix:client:api:* urn:matrix:client:device:"+dev, "ssostate", challenge, nil)),
		chromedp.WaitVisible(chromedp.CSS(`a[href^="/_lattice/sso/web/corp/start"]`)),
		chromedp.Click(chromedp.CSS(`a[href^="/_lattice/sso/web/corp/start"]`)))
	atProvider("corp-0001")
	do("consent", chromedp.WaitVisible(chromedp.CSS("#client-name")), chromedp.Click(chromedp.CSS(`button[value="allow"]`)),
		chromedp.WaitVisible(chromedp.CSS("#done")))
	var q url.Values
	select {
	case q = <-codes:
	case <-time.After(10 * time.Second):
		t.Fatal("the browser did not come back to the client")
	}
	tok := tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")},
		"redirect_uri": {redirect}, "client_id": {clientID}, "code_verifier": {verifier}})
	if tok.Status != 200 || q.Get("state") != "ssostate" {
		t.Fatalf("exchange: %d %s (callback %v)", tok.Status, tok.Raw, q)
	}
	alice := &Client{t: t, srv: s, UserID: "@alice:localhost", DeviceID: dev, Token: str(tok.Body, "access_token")}
	if r := whoami(alice); str(r.Body, "user_id") != "@alice:localhost" {
		t.Fatalf("whoami of the SSO-signed-in OAuth session: %d %s", r.Status, r.Raw)
	}

	// The m.login.sso stage: alice (no password) deletes another device of hers.
	other := tokenLogin(t, s, newSSOBrowser(t, s).ssoLoginToken(ssoStart(s, "corp"), "corp-0001"))
	path := "/_matrix/client/v3/devices/" + esc(str(other.Body, "device_id"))
	session := uiaChallenge401(t, call(alice, "DELETE", path, map[string]any{}))
	do("fallback page", chromedp.Navigate(s.URL+"/_matrix/client/v3/auth/m.login.sso/fallback/web?session="+url.QueryEscape(session)),
		chromedp.WaitVisible(chromedp.CSS("#operation")))
	opText, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#operation")))
	if err != nil || !strings.Contains(opText, fmt.Sprintf("sign out the device %q", str(other.Body, "device_id"))) {
		t.Errorf("fallback page says %q (%v)", opText, err)
	}
	// The browser is still signed in at the provider, which sends it straight back.
	do("fallback button", chromedp.Click(chromedp.CSS("#idp-corp")))
	for start := time.Now(); ; time.Sleep(200 * time.Millisecond) {
		title, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.readyState === "complete" ? document.title : ""`))
		if title == "Identity confirmed" {
			break
		}
		if time.Since(start) > 30*time.Second {
			body, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
			t.Fatalf("after the fallback: %q\n%s", title, body)
		}
	}
	expectOK(t, call(alice, "DELETE", path, map[string]any{"auth": map[string]any{"type": "m.login.sso", "session": session}}), "device deletion after the fallback in Chromium")
}
