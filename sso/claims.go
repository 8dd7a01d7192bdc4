package sso

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/lattice-chat/lattice/internal/config"
)

// claimString returns a claim as a string: a string as it is, a number in decimal; "" for
// anything else or a missing claim.
func claimString(claims map[string]any, name string) string {
	switch v := claims[name].(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case json.Number:
		return v.String()
	}
	return ""
}

// checkClaims applies the provider's required_claims and allowed_email_domains.
func checkClaims(p config.SSOProvider, claims map[string]any) error {
	for name, want := range p.RequiredClaims {
		if !claimHas(claims[name], want) {
			return refused(http.StatusForbidden, "Sign-in refused",
				"Your account at %s is not allowed to sign in to this server (its %q is not %q).", p.Name, name, want)
		}
	}
	if len(p.AllowedEmailDomains) > 0 {
		email := strings.ToLower(strings.TrimSpace(claimString(claims, p.EmailClaim)))
		_, domain, ok := strings.Cut(email, "@")
		if !ok || domain == "" || strings.Contains(domain, "@") {
			return refused(http.StatusForbidden, "Sign-in refused",
				"%s did not give an e-mail address, and this server admits only addresses of some domains.", p.Name)
		}
		// Only an address the provider says it verified proves anything about its domain: a
		// missing claim counts as unverified (some providers send "true" as a string).
		if !emailVerified(claims["email_verified"]) {
			return refused(http.StatusForbidden, "Sign-in refused",
				"Your e-mail address %s is not verified at %s.", email, p.Name)
		}
		allowed := false
		for _, d := range p.AllowedEmailDomains {
			if strings.EqualFold(strings.TrimPrefix(d, "@"), domain) {
				allowed = true
			}
		}
		if !allowed {
			return refused(http.StatusForbidden, "Sign-in refused",
				"The e-mail domain %s is not allowed to sign in to this server.", domain)
		}
	}
	return nil
}

// emailVerified reports whether an email_verified claim says yes: true, or "true".
func emailVerified(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		return strings.EqualFold(v, "true")
	}
	return false
}

// claimHas reports whether a claim is want, or a list holding want.
func claimHas(v any, want string) bool {
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			if claimHas(e, want) {
				return true
			}
		}
		return false
	case bool:
		return strconv.FormatBool(v) == want
	case nil:
		return false
	}
	return claimString(map[string]any{"c": v}, "c") == want
}

// maxLocalpart keeps room for digits and the server name in a user ID of at most 255 bytes.
const maxLocalpart = 64

// mapLocalpart maps a provider's user name onto the user ID grammar ([a-z0-9._=-/+]),
// following the spec's suggested mapping (appendices, "Mapping from other character sets"):
// A-Z become a-z, a-z 0-9 . _ - stay, and every other byte becomes =xx (its hex value).
// An empty result is "user".
func mapLocalpart(name string) string {
	var b strings.Builder
	for i := 0; i < len(name) && b.Len() < maxLocalpart; i++ {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "=%02x", c)
		}
	}
	if b.Len() == 0 {
		return "user"
	}
	return b.String()
}
