package e2e

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// Helpers of the OAuth 2.0 API tests: a browser made of an http.Client with a cookie jar that
// reads the HTML forms of Lattice's pages, and a public client doing PKCE.

// oauthMeta fetches the server metadata.
func oauthMeta(t *testing.T, s *Server) map[string]any {
	t.Helper()
	r := s.Do(t, "", "GET", "/_matrix/client/v1/auth_metadata", nil)
	if r.Status != 200 {
		t.Fatalf("auth_metadata: %d %s", r.Status, r.Raw)
	}
	return r.Body
}

// registerOAuthClient registers a client with dynamic client registration.
func registerOAuthClient(t *testing.T, s *Server, md map[string]any) Resp {
	t.Helper()
	return s.Do(t, "", "POST", "/_lattice/oauth2/register", md)
}

// nativeClient registers a native client whose redirect URI is http://127.0.0.1/callback.
func nativeClient(t *testing.T, s *Server, extra map[string]any) string {
	t.Helper()
	md := map[string]any{
		"client_name": "Test Native", "client_uri": "https://client.example.org/", "application_type": "native",
		"redirect_uris":  []string{"http://127.0.0.1/callback", "org.example.client:/callback"},
		"grant_types":    []string{"authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"},
		"response_types": []string{"code"}, "token_endpoint_auth_method": "none",
	}
	for k, v := range extra {
		md[k] = v
	}
	r := registerOAuthClient(t, s, md)
	if r.Status != 201 {
		t.Fatalf("register client: %d %s", r.Status, r.Raw)
	}
	return str(r.Body, "client_id")
}

// pkce returns a code verifier and its S256 challenge.
func pkce() (verifier, challenge string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	verifier = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

func randomDeviceID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "OA" + strings.ToUpper(strings.NewReplacer("-", "x", "_", "y").Replace(base64.RawURLEncoding.EncodeToString(b)))
}

// browser is a cookie-keeping HTTP client that stops at redirects leaving the server.
type browser struct {
	t   *testing.T
	s   *Server
	c   *http.Client
	url string // the last page's URL
}

func newBrowser(t *testing.T, s *Server) *browser {
	jar, _ := cookiejar.New(nil)
	b := &browser{t: t, s: s}
	b.c = &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if !strings.HasPrefix(req.URL.String(), s.URL) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	return b
}

// page is a fetched page: status, final URL, body, and the Location when it redirected away.
type page struct {
	Status   int
	URL      string
	Body     string
	Location string
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	b.url = resp.Request.URL.String()
	return page{Status: resp.StatusCode, URL: b.url, Body: string(body), Location: resp.Header.Get("Location")}
}

func (b *browser) get(u string) page {
	b.t.Helper()
	if strings.HasPrefix(u, "/") {
		u = b.s.URL + u
	}
	req, _ := http.NewRequest("GET", u, nil)
	return b.do(req)
}

func (b *browser) post(action string, form url.Values) page {
	b.t.Helper()
	u := action
	if !strings.Contains(u, "://") { // relative to the page the form is on
		base := b.url
		if base == "" {
			base = b.s.URL + "/"
		}
		ref, err := url.Parse(base)
		if err != nil {
			b.t.Fatal(err)
		}
		to, err := ref.Parse(u)
		if err != nil {
			b.t.Fatal(err)
		}
		u = to.String()
	}
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// htmlForm is a form of a page: its action and its inputs' values (hidden ones filled in).
type htmlForm struct {
	Action string
	Values url.Values
}

// forms parses the POST forms of a page.
func forms(t *testing.T, body string) []htmlForm {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var out []htmlForm
	var cur *htmlForm
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			attr := map[string]string{}
			for _, a := range n.Attr {
				attr[a.Key] = a.Val
			}
			switch n.Data {
			case "form":
				if attr["method"] == "post" {
					out = append(out, htmlForm{Action: attr["action"], Values: url.Values{}})
					cur = &out[len(out)-1]
					for c := n.FirstChild; c != nil; c = c.NextSibling {
						walk(c)
					}
					cur = nil
					return
				}
			case "input":
				if cur != nil && attr["name"] != "" {
					cur.Values.Set(attr["name"], attr["value"])
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return out
}

// formTo returns the page's form posting to action.
func formTo(t *testing.T, p page, action string) htmlForm {
	t.Helper()
	for _, f := range forms(t, p.Body) {
		if f.Action == action {
			return f
		}
	}
	t.Fatalf("no form to %s on %s (%d):\n%s", action, p.URL, p.Status, p.Body)
	return htmlForm{}
}

// authorizeURL builds an authorization request.
func authorizeURL(s *Server, clientID, redirectURI, scope, state, challenge string, extra url.Values) string {
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirectURI}, "scope": {scope},
		"state": {state}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}
	for k, v := range extra {
		q[k] = v
	}
	return s.URL + "/_lattice/oauth2/authorize?" + q.Encode()
}

// signIn fills the sign-in form of p.
func (b *browser) signIn(p page, user, password string) page {
	b.t.Helper()
	f := formTo(b.t, p, "/_lattice/account/login")
	f.Values.Set("username", user)
	f.Values.Set("password", password)
	return b.post(f.Action, f.Values)
}

// consent answers the consent page p (allow or deny) and returns the redirect back to the
// client.
func (b *browser) consent(p page, action string) page {
	b.t.Helper()
	var f htmlForm
	for _, x := range forms(b.t, p.Body) {
		if x.Values.Get("csrf") != "" && (x.Action == "/_lattice/oauth2/authorize" || x.Action == "/_lattice/account/device") {
			f = x
		}
	}
	if f.Action == "" {
		b.t.Fatalf("no consent form on %s (%d):\n%s", p.URL, p.Status, p.Body)
	}
	f.Values.Set("action", action)
	return b.post(f.Action, f.Values)
}

// codeFrom reads the code and state of a redirect back to the client.
func codeFrom(t *testing.T, p page) (code, state string) {
	t.Helper()
	if p.Status != 303 || p.Location == "" {
		t.Fatalf("want a redirect back to the client, got %d %s:\n%s", p.Status, p.Location, p.Body)
	}
	u, err := url.Parse(p.Location)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Fragment != "" {
		q, _ = url.ParseQuery(u.Fragment)
	}
	if e := q.Get("error"); e != "" {
		t.Fatalf("redirect with error %s: %s", e, q.Get("error_description"))
	}
	return q.Get("code"), q.Get("state")
}

// tokenRequest posts a form to the token endpoint (or another OAuth endpoint).
func tokenRequest(t *testing.T, s *Server, path string, form url.Values) Resp {
	t.Helper()
	resp, err := httpClient.Post(s.URL+path, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := Resp{Status: resp.StatusCode, Raw: raw}
	_ = json.Unmarshal(raw, &r.Body)
	return r
}

func expectOAuthErr(t *testing.T, r Resp, what string, status int, code string) {
	t.Helper()
	if r.Status != status || str(r.Body, "error") != code {
		t.Fatalf("%s: want %d %s, got %d %s", what, status, code, r.Status, r.Raw)
	}
}

// codeFlow signs user in through the pages and exchanges the code: the token response.
func codeFlow(t *testing.T, s *Server, clientID, deviceID, user, password string) Resp {
	t.Helper()
	b := newBrowser(t, s)
	verifier, challenge := pkce()
	redirect := "http://127.0.0.1:43123/callback"
	p := b.get(authorizeURL(s, clientID, redirect, "urn:matrix:client:api:* urn:matrix:client:device:"+deviceID, "st4te", challenge, nil))
	p = b.signIn(p, user, password)
	code, state := codeFrom(t, b.consent(p, "allow"))
	if state != "st4te" {
		t.Fatalf("state %q", state)
	}
	r := tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {redirect}, "client_id": {clientID}, "code_verifier": {verifier}})
	if r.Status != 200 {
		t.Fatalf("code exchange: %d %s", r.Status, r.Raw)
	}
	return r
}

// setConfig replaces a line of the server's config and restarts it.
func setConfig(t *testing.T, s *Server, old, repl string) {
	t.Helper()
	s.Stop()
	raw, err := os.ReadFile(s.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), old) {
		t.Fatalf("config has no %q", old)
	}
	if err := os.WriteFile(s.ConfigPath, []byte(strings.Replace(string(raw), old, repl, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Start()
}

// execDB runs a statement on the server's database, to age grants that would otherwise
// take minutes to expire.
func execDB(t *testing.T, s *Server, stmt string) {
	t.Helper()
	raw, err := os.ReadFile(s.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^  url: "([^"]+)"`).FindSubmatch(raw)
	if m == nil {
		t.Fatal("no database url in config")
	}
	driver, dsn := "pgx", string(m[1])
	if path, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
		if !strings.HasPrefix(path, "/") {
			path = s.DataDir + "/" + path
		}
		driver, dsn = "sqlite", "file:"+path+"?_pragma=busy_timeout(5000)"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// verifyIDToken checks an ID token's RS256 signature with the keys of jwks_uri and returns
// its claims.
func verifyIDToken(t *testing.T, s *Server, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("ID token %q", tok)
	}
	keys := s.Do(t, "", "GET", strings.TrimPrefix(str(oauthMeta(t, s), "jwks_uri"), s.URL), nil)
	var header struct{ Alg, Kid string }
	raw, _ := base64.RawURLEncoding.DecodeString(parts[0])
	_ = json.Unmarshal(raw, &header)
	ks, _ := keys.Body["keys"].([]any)
	for _, k := range ks {
		jwk := k.(map[string]any)
		if jwk["kid"] != header.Kid || header.Alg != "RS256" {
			continue
		}
		n, _ := base64.RawURLEncoding.DecodeString(jwk["n"].(string))
		e, _ := base64.RawURLEncoding.DecodeString(jwk["e"].(string))
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
			t.Fatalf("ID token signature: %v", err)
		}
		var claims map[string]any
		body, _ := base64.RawURLEncoding.DecodeString(parts[1])
		if err := json.Unmarshal(body, &claims); err != nil {
			t.Fatal(err)
		}
		return claims
	}
	t.Fatalf("no key %q in %s", header.Kid, keys.Raw)
	return nil
}

// newCrossSigningKeys is the body of a /keys/device_signing/upload with new master,
// self-signing and user-signing keys of userID, the latter two signed by the master key.
func newCrossSigningKeys(t *testing.T, userID string) map[string]any {
	master, ssk, usk := newSigningKey(t), newSigningKey(t), newSigningKey(t)
	mk := map[string]any{"user_id": userID, "usage": []string{"master"}, "keys": map[string]string{"ed25519:" + master.pub: master.pub}}
	sk := signed(t, map[string]any{"user_id": userID, "usage": []string{"self_signing"}, "keys": map[string]string{"ed25519:" + ssk.pub: ssk.pub}}, userID, "ed25519:"+master.pub, master)
	uk := signed(t, map[string]any{"user_id": userID, "usage": []string{"user_signing"}, "keys": map[string]string{"ed25519:" + usk.pub: usk.pub}}, userID, "ed25519:"+master.pub, master)
	return map[string]any{"master_key": mk, "self_signing_key": sk, "user_signing_key": uk}
}
