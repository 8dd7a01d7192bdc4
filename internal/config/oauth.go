package config

import (
	"errors"
	"time"
)

// OAuth configures the OAuth 2.0 API (Client-Server API, "OAuth 2.0 API") that Lattice serves
// as its own authorization server, its web pages for signing in, and the lifetime of
// refreshable sessions, which /login and /register with refresh_token: true share.
type OAuth struct {
	// Enabled serves the OAuth 2.0 API: GET /_matrix/client/v1/auth_metadata and the
	// endpoints and web pages under /_lattice/.
	Enabled bool `yaml:"enabled"`
	// AccessTokenLifetime is how long an access token of a session with a refresh token
	// lives; sessions without a refresh token keep tokens that never expire.
	AccessTokenLifetime time.Duration `yaml:"access_token_lifetime"`
	// RefreshTokenLifetime is how long a refresh token stays usable if unused (each refresh
	// starts it again); 0: until the session ends.
	RefreshTokenLifetime time.Duration `yaml:"refresh_token_lifetime"`
	// CookieSecret signs the web pages' session cookies. Empty: a random key kept in
	// data_dir/oauth_cookie.key, made on first start. Several processes behind one load
	// balancer need the same secret.
	CookieSecret string `yaml:"cookie_secret"`
}

func (o *OAuth) validate() []error {
	var errs []error
	if o.AccessTokenLifetime < time.Second {
		errs = append(errs, errors.New("oauth.access_token_lifetime must be at least 1s"))
	}
	if o.RefreshTokenLifetime != 0 && o.RefreshTokenLifetime < o.AccessTokenLifetime {
		errs = append(errs, errors.New("oauth.refresh_token_lifetime must be 0 or at least access_token_lifetime"))
	}
	return errs
}
