package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestOAuthMatrixJSSDK runs matrix-js-sdk's OAuth 2.0 helpers (what Element Web signs in
// with) against Lattice: metadata discovery and validation with the signing keys, dynamic
// registration of a web client, the SDK's authorization URL (signed in and approved by the
// test's browser), and the code exchange checked with the SDK's own validators, ID token
// included, then the SDK's OidcTokenRefresher as the client's token refresh function across
// two access token expiries. See jssdk/oauth.mjs.
func TestOAuthMatrixJSSDK(t *testing.T) {
	node := requireNodeModules(t)
	s := StartServer(t)
	setConfig(t, s, `access_token_lifetime: "5m"`, `access_token_lifetime: "3s"`)
	s.Register(t, "alice")
	redirect := "https://app.example.org/callback"
	out := runOAuthScript(t, node, s, "OAUTH_STEP=discover", "OAUTH_REDIRECT_URI="+redirect)
	var p struct{ ClientID, URL, Verifier, Nonce, State, Issuer, TokenEndpoint string }
	line := lineWith(t, out, "PARAMS ")
	if err := json.Unmarshal([]byte(line), &p); err != nil {
		t.Fatalf("PARAMS %s: %v", line, err)
	}
	// The registered client as the SDK registered it.
	if !strings.HasPrefix(p.URL, s.URL+"/_lattice/oauth2/authorize?") {
		t.Fatalf("authorization URL %s", p.URL)
	}
	b := newBrowser(t, s)
	page := b.signIn(b.get(p.URL), "alice", "correct horse battery")
	if !strings.Contains(page.Body, "js-sdk test") {
		t.Fatalf("consent page: %d %s", page.Status, page.Body)
	}
	code, state := codeFrom(t, b.consent(page, "allow"))
	if state != p.State || !strings.HasPrefix(b.url, s.URL) {
		t.Fatalf("state %q, want %q", state, p.State)
	}
	out = runOAuthScript(t, node, s, "OAUTH_STEP=exchange", "OAUTH_REDIRECT_URI="+redirect, "OAUTH_CLIENT_ID="+p.ClientID,
		"OAUTH_CODE="+code, "OAUTH_VERIFIER="+p.Verifier, "OAUTH_NONCE="+p.Nonce, "OAUTH_ISSUER="+p.Issuer, "OAUTH_TOKEN_ENDPOINT="+p.TokenEndpoint,
		"OAUTH_EXPIRY_WAIT_MS=3500")
	if who := lineWith(t, out, "WHOAMI "); !strings.HasPrefix(who, "@alice:localhost ") {
		t.Errorf("whoami through the SDK: %s", who)
	}
	if n := lineWith(t, out, "REFRESHED "); n != "2" {
		t.Errorf("the SDK's token refresher refreshed %s times across two expiries, want 2", n)
	}
	q, _ := url.Parse(p.URL)
	if sc := q.Query().Get("scope"); !strings.Contains(sc, "urn:matrix:org.matrix.msc2967.client:device:") {
		t.Errorf("the SDK's scope %q", sc)
	}
}

// runOAuthScript runs jssdk/oauth.mjs with env and returns its output.
func runOAuthScript(t *testing.T, node string, s *Server, env ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "oauth.mjs")
	cmd.Dir = jssdkDir
	cmd.Env = append(append(os.Environ(), "LATTICE_URL="+s.URL), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("node oauth.mjs %v: %v\n%s", env[0], err, out.String())
	}
	return out.String()
}

// lineWith returns the rest of the output line starting with prefix.
func lineWith(t *testing.T, out, prefix string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, prefix); ok {
			return rest
		}
	}
	t.Fatalf("no %q line in:\n%s", prefix, out)
	return ""
}
