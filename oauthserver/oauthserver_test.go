package oauthserver

import "testing"

func TestSafeNext(t *testing.T) {
	for next, want := range map[string]string{
		"/_lattice/oauth2/authorize?client_id=x&state=y": "/_lattice/oauth2/authorize?client_id=x&state=y",
		"/_lattice/account/device?user_code=AB":          "/_lattice/account/device?user_code=AB",
		"https://evil.example/":                          pathAccount,
		"//evil.example/x":                               pathAccount,
		"/\\evil.example":                                pathAccount,
		"javascript:alert(1)":                            pathAccount,
		"/_matrix/client/versions":                       pathAccount,
		"/_lattice/account/../../x":                      pathAccount,
		"/_lattice/account/%2e%2e/x":                     pathAccount,
		"":                                               pathAccount,
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}

func TestRedirectAllowed(t *testing.T) {
	native := &client{ApplicationType: "native", RedirectURIs: []string{"http://127.0.0.1/cb", "http://[::1]/cb", "com.example:/cb"}}
	web := &client{ApplicationType: "web", RedirectURIs: []string{"https://example.com/cb"}}
	for _, tc := range []struct {
		c    *client
		uri  string
		want bool
	}{
		{native, "http://127.0.0.1/cb", true},
		{native, "http://127.0.0.1:4567/cb", true},
		{native, "http://[::1]:4567/cb", true},
		{native, "http://127.0.0.1:4567/other", false},
		{native, "http://localhost:4567/cb", false},
		{native, "http://user@127.0.0.1:4567/cb", false},
		{native, "com.example:/cb", true},
		{native, "com.example:/cb2", false},
		{web, "https://example.com/cb", true},
		{web, "https://example.com:444/cb", false},
		{web, "https://example.com/cb?x=1", false},
	} {
		if got := tc.c.redirectAllowed(tc.uri); got != tc.want {
			t.Errorf("%s redirectAllowed(%q) = %v", tc.c.ApplicationType, tc.uri, got)
		}
	}
}

func TestParseScope(t *testing.T) {
	for scope, wantDevice := range map[string]string{
		"urn:matrix:client:api:* urn:matrix:client:device:ABCDEFGHIJ":                                           "ABCDEFGHIJ",
		"openid urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:a-b.c~_": "a-b.c~_",
		"urn:matrix:client:api:*":      "",
		"urn:matrix:client:device:ABC": "",
		"urn:matrix:client:api:* urn:matrix:client:device:A urn:matrix:client:device:B": "",
		"urn:matrix:client:api:* urn:matrix:client:device:A/B":                          "",
		"urn:matrix:client:api:* urn:matrix:client:device:":                             "",
	} {
		g, err := parseScope(scope)
		if wantDevice == "" {
			if err == nil {
				t.Errorf("parseScope(%q) accepted", scope)
			}
			continue
		}
		if err != nil || g.DeviceID != wantDevice {
			t.Errorf("parseScope(%q) = %+v, %v", scope, g, err)
		}
	}
}

func TestNormalUserCode(t *testing.T) {
	for in, want := range map[string]string{"bcdf-ghjk": "BCDF-GHJK", "BCDFGHJK": "BCDF-GHJK", " bcdf ghjk ": "BCDF-GHJK"} {
		if got := normalUserCode(in); got != want {
			t.Errorf("normalUserCode(%q) = %q", in, got)
		}
	}
	if c := newUserCode(); len(c) != 9 || normalUserCode(c) != c {
		t.Errorf("newUserCode %q", c)
	}
}
