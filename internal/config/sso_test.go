package config

import (
	"strings"
	"testing"
)

// TestSSOConfig: providers get their defaults; a provider without public_base_url, a bad or
// repeated id, a bad issuer, a missing client_id and a non-mxc icon are reported.
func TestSSOConfig(t *testing.T) {
	p := SSOProvider{ID: "kc"}.WithDefaults()
	if p.Name != "kc" || p.SubjectClaim != "sub" || p.LocalpartClaim != "preferred_username" ||
		p.DisplayNameClaim != "name" || p.EmailClaim != "email" || strings.Join(p.Scopes, " ") != "openid profile email" {
		t.Errorf("defaults: %+v", p)
	}

	good := Default()
	good.ServerName, good.DataDir = "a.b", t.TempDir()
	good.ClientAPI.PublicBaseURL = "https://matrix.a.b"
	good.SSO.Providers = []SSOProvider{{ID: "keycloak", Issuer: "https://kc.a.b/realms/x", ClientID: "lattice"}}
	if err := good.Validate(); err != nil {
		t.Errorf("valid provider refused: %v", err)
	}

	bad := good
	bad.ClientAPI.PublicBaseURL = ""
	bad.SSO.Providers = []SSOProvider{
		{ID: "a b", Issuer: "https://kc.a.b", ClientID: "x"},
		{ID: "dup", Issuer: "ftp://kc.a.b", ClientID: "x"},
		{ID: "dup", Issuer: "https://kc.a.b", Icon: "https://logo"},
	}
	bad.SSO.LoginTokenLifetime = 0
	err := bad.Validate()
	for _, want := range []string{"client_api.public_base_url", `sso.providers[0].id "a b"`, "sso.providers[1].issuer",
		`sso.providers[2].id "dup" is used twice`, "sso.providers[2].client_id", "sso.providers[2].icon", "sso.login_token_lifetime"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
}
