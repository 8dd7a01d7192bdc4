package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// SSO configures single sign-on through upstream OpenID Connect providers (the sso package)
// and the m.login.token tokens that the legacy SSO login flow and
// POST /_matrix/client/v1/login/get_token hand out.
type SSO struct {
	// Providers are the OpenID Connect providers users may sign in with. Empty: no single
	// sign-on (GET /login then offers no m.login.sso flow).
	Providers []SSOProvider `yaml:"providers"`
	// ClientWhitelist are clients trusted to receive a login token without the "Continue to
	// ...?" confirmation page (e.g. "https://app.element.io/"): a redirectUrl of the same
	// scheme and host whose path is under the entry's path. Every other redirectUrl gets the
	// page, so a phishing link cannot silently collect a login token.
	ClientWhitelist []string `yaml:"client_whitelist"`
	// LoginTokenLifetime is how long a login token of POST /login/get_token stays valid.
	LoginTokenLifetime time.Duration `yaml:"login_token_lifetime"`
	// RedirectTokenLifetime is how long the login token appended to a client's redirectUrl
	// at the end of a single sign-on stays valid (the spec: "around five seconds"); it is
	// made when the browser goes to the client, after any confirmation page.
	RedirectTokenLifetime time.Duration `yaml:"redirect_login_token_lifetime"`
	// GetLoginToken enables POST /_matrix/client/v1/login/get_token: a signed-in user who
	// confirms their password gets a login token for another device (QR code sign-in).
	GetLoginToken bool `yaml:"get_login_token"`
}

// SSOProvider is one upstream OpenID Connect provider.
type SSOProvider struct {
	// ID names the provider in URLs (/login/sso/redirect/{idpId}) and in user_external_ids:
	// 1 to 255 characters of [A-Za-z0-9._~-]. Changing it unlinks every account.
	ID    string `yaml:"id"`
	Name  string `yaml:"name"`  // shown to users
	Icon  string `yaml:"icon"`  // an mxc:// URI, or empty
	Brand string `yaml:"brand"` // e.g. "github", "gitlab", "google", "apple", "facebook", "twitter"
	// Issuer is the provider's issuer URL; its /.well-known/openid-configuration is read at start.
	Issuer       string   `yaml:"issuer"`
	ClientID     string   `yaml:"client_id"`
	ClientSecret string   `yaml:"client_secret"`
	Scopes       []string `yaml:"scopes"` // default openid, profile, email
	// SubjectClaim identifies the user at the provider (default "sub"); accounts are linked
	// by (id, subject), never by name.
	SubjectClaim string `yaml:"subject_claim"`
	// LocalpartClaim (default preferred_username) proposes the localpart of a new account,
	// mapped onto the user ID grammar.
	LocalpartClaim   string `yaml:"localpart_claim"`
	DisplayNameClaim string `yaml:"display_name_claim"` // default name
	EmailClaim       string `yaml:"email_claim"`        // default email
	// AllowedEmailDomains, when not empty, admits only users whose (verified) e-mail address
	// is in one of these domains.
	AllowedEmailDomains []string `yaml:"allowed_email_domains"`
	// RequiredClaims must all have exactly these values (a string, or a member of a list
	// claim such as groups), or sign-in is refused.
	RequiredClaims map[string]string `yaml:"required_claims"`
	// AllowExistingUsers lets the first sign-in of a provider identity take over the local
	// account whose localpart is the one proposed, unless that account is a server admin or
	// is linked to another identity of this provider already (then the sign-in is refused).
	// Turn it on only when users cannot choose the value of localpart_claim at the provider.
	// Off (the default), a new account is made, with digits appended to the localpart when
	// it is taken (alice, alice1, alice2, ...).
	AllowExistingUsers bool `yaml:"allow_existing_users"`
}

var idpIDPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,255}$`)

// WithDefaults returns p with its unset claims and scopes at their defaults.
func (p SSOProvider) WithDefaults() SSOProvider {
	if len(p.Scopes) == 0 {
		p.Scopes = []string{"openid", "profile", "email"}
	}
	if p.SubjectClaim == "" {
		p.SubjectClaim = "sub"
	}
	if p.LocalpartClaim == "" {
		p.LocalpartClaim = "preferred_username"
	}
	if p.DisplayNameClaim == "" {
		p.DisplayNameClaim = "name"
	}
	if p.EmailClaim == "" {
		p.EmailClaim = "email"
	}
	if p.Name == "" {
		p.Name = p.ID
	}
	return p
}

func (c *Config) validateSSO() []error {
	var errs []error
	s := &c.SSO
	if s.LoginTokenLifetime < time.Second {
		errs = append(errs, errors.New("sso.login_token_lifetime must be at least 1s"))
	}
	if s.RedirectTokenLifetime < time.Second {
		errs = append(errs, errors.New("sso.redirect_login_token_lifetime must be at least 1s"))
	}
	if len(s.Providers) > 0 && !strings.HasPrefix(c.ClientAPI.PublicBaseURL, "http") {
		errs = append(errs, errors.New("sso.providers need client_api.public_base_url: the providers send users back to it"))
	}
	seen := map[string]bool{}
	for i, p := range s.Providers {
		where := fmt.Sprintf("sso.providers[%d]", i)
		if !idpIDPattern.MatchString(p.ID) {
			errs = append(errs, fmt.Errorf("%s.id %q must be 1 to 255 characters of A-Z a-z 0-9 . _ ~ -", where, p.ID))
		} else if seen[p.ID] {
			errs = append(errs, fmt.Errorf("%s.id %q is used twice", where, p.ID))
		}
		seen[p.ID] = true
		if u, err := url.Parse(p.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s.issuer must be an http(s) URL", where))
		}
		if p.ClientID == "" {
			errs = append(errs, fmt.Errorf("%s.client_id is required", where))
		}
		if p.Icon != "" && !strings.HasPrefix(p.Icon, "mxc://") {
			errs = append(errs, fmt.Errorf("%s.icon must be an mxc:// URI", where))
		}
	}
	for _, w := range s.ClientWhitelist {
		if u, err := url.Parse(w); err != nil || u.Scheme == "" || u.Host == "" {
			errs = append(errs, fmt.Errorf("sso.client_whitelist: %q is not an absolute URL", w))
		}
	}
	return errs
}
