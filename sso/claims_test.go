package sso

import (
	"errors"
	"net/http"
	"testing"

	"github.com/lattice-chat/lattice/internal/config"
)

func TestMapLocalpart(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"alice", "alice"},
		{"Alice.Smith", "alice.smith"},
		{"bob_2-x", "bob_2-x"},
		{"alice@example.org", "alice=40example.org"},
		{"Dan Brown!", "dan=20brown=21"},
		{"Zoë", "zo=c3=ab"},
		{"a/b+c", "a=2fb=2bc"},
		{"", "user"},
	} {
		if got := mapLocalpart(tc.in); got != tc.want {
			t.Errorf("mapLocalpart(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	long := mapLocalpart(string(make([]byte, 500)))
	if len(long) > maxLocalpart+2 {
		t.Errorf("a long name maps to %d bytes", len(long))
	}
}

func TestCheckClaims(t *testing.T) {
	p := config.SSOProvider{ID: "corp", Name: "Corp", EmailClaim: "email",
		RequiredClaims:      map[string]string{"department": "eng", "groups": "matrix"},
		AllowedEmailDomains: []string{"example.org"}}
	ok := map[string]any{"department": "eng", "groups": []any{"staff", "matrix"}, "email": "A@Example.ORG", "email_verified": true}
	if err := checkClaims(p, ok); err != nil {
		t.Errorf("matching claims refused: %v", err)
	}
	for name, change := range map[string]func(map[string]any){
		"other department":    func(c map[string]any) { c["department"] = "sales" },
		"missing claim":       func(c map[string]any) { delete(c, "department") },
		"group not in list":   func(c map[string]any) { c["groups"] = []any{"staff"} },
		"other domain":        func(c map[string]any) { c["email"] = "a@example.org.evil.test" },
		"no e-mail":           func(c map[string]any) { delete(c, "email") },
		"two @":               func(c map[string]any) { c["email"] = "a@evil.test@example.org" },
		"unverified address":  func(c map[string]any) { c["email_verified"] = false },
		"unsaid verification": func(c map[string]any) { delete(c, "email_verified") },
		"verified as string":  func(c map[string]any) { c["email_verified"] = "false" },
		"verified as number":  func(c map[string]any) { c["email_verified"] = float64(1) },
	} {
		c := map[string]any{}
		for k, v := range ok {
			c[k] = v
		}
		change(c)
		var pe *pageError
		if err := checkClaims(p, c); !errors.As(err, &pe) || pe.status != http.StatusForbidden {
			t.Errorf("%s: checkClaims = %v, want a 403 page", name, err)
		}
	}
}

func TestEmailVerifiedAsString(t *testing.T) {
	p := config.SSOProvider{ID: "corp", Name: "Corp", EmailClaim: "email", AllowedEmailDomains: []string{"example.org"}}
	if err := checkClaims(p, map[string]any{"email": "a@example.org", "email_verified": "true"}); err != nil {
		t.Errorf("email_verified \"true\" refused: %v", err)
	}
}

func TestWhitelisted(t *testing.T) {
	list := []string{"https://app.example", "https://web.example/app/", "io.element.app:/"}
	for _, tc := range []struct {
		url  string
		want bool
	}{
		{"https://app.example/", true},
		{"https://app.example", true},
		{"https://APP.example/cb?x=1", true},
		{"https://app.example.evil/", false},
		{"https://app.example:8443/", false},
		{"http://app.example/", false},
		{"https://app.example@evil.test/", false},
		{"https://web.example/app/cb", true},
		{"https://web.example/application", false},
		{"https://web.example/app/../../evil", false},
		{"https://web.example/", false},
		{"io.element.app:/callback", true},
		{"io.element.app.evil:/callback", false},
	} {
		if got := whitelisted(list, tc.url); got != tc.want {
			t.Errorf("whitelisted(%q) = %v, want %v", tc.url, got, tc.want)
		}
	}
}

func TestWithLoginToken(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://c.example/cb", "https://c.example/cb?loginToken=t%2B1"},
		{"https://c.example/cb?x=1", "https://c.example/cb?x=1&loginToken=t%2B1"},
		{"https://c.example/cb?", "https://c.example/cb?loginToken=t%2B1"},
		{"https://c.example/#/room", "https://c.example/?loginToken=t%2B1#/room"},
		{"io.element.app:/callback", "io.element.app:/callback?loginToken=t%2B1"},
		{"https://c.example/cb?loginToken=evil&x=1", "https://c.example/cb?x=1&loginToken=t%2B1"},
		{"https://c.example/cb?x=1&loginToken=a&loginToken=b#f", "https://c.example/cb?x=1&loginToken=t%2B1#f"},
		{"https://c.example/cb?loginToken=evil", "https://c.example/cb?loginToken=t%2B1"},
		{"https://c.example/cb?x=%20&loginTokenX=1", "https://c.example/cb?x=%20&loginTokenX=1&loginToken=t%2B1"},
	} {
		if got := withLoginToken(tc.in, "t+1"); got != tc.want {
			t.Errorf("withLoginToken(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRedirectTargets(t *testing.T) {
	for u, want := range map[string]bool{
		"https://app.example/": true, "io.element:/cb": true, "http://localhost:8080/cb": true,
		"javascript:alert(1)": false, "JavaScript:alert(1)": false, "data:text/html,x": false,
		"/relative": false, "": false,
	} {
		if got := clientURI(u); got != want {
			t.Errorf("clientURI(%q) = %v, want %v", u, got, want)
		}
	}
	for u, want := range map[string]bool{
		"/_lattice/oauth2/authorize?x=1": true, "//evil.example/": false, "/\\evil.example": false,
		"https://evil.example/": false, "": false,
	} {
		if got := localPath(u); got != want {
			t.Errorf("localPath(%q) = %v, want %v", u, got, want)
		}
	}
}

func TestSealedCookies(t *testing.T) {
	s := newSealer(make([]byte, 32))
	sealed, err := s.seal("sso-flow", flow{State: "abc", Expires: 5})
	if err != nil {
		t.Fatal(err)
	}
	var f flow
	if err := s.open("sso-flow", sealed, &f); err != nil || f.State != "abc" {
		t.Fatalf("open = %v %+v", err, f)
	}
	// Another purpose, another key or an altered value do not open.
	if err := s.open("sso-user", sealed, &f); err == nil {
		t.Error("a flow cookie opened as a user cookie")
	}
	other := make([]byte, 32)
	other[0] = 1
	if err := newSealer(other).open("sso-flow", sealed, &f); err == nil {
		t.Error("a cookie opened under another key")
	}
	b := []byte(sealed)
	b[len(b)/2] ^= 1
	if err := s.open("sso-flow", string(b), &f); err == nil {
		t.Error("an altered cookie opened")
	}
}
