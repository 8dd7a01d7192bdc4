// Package sso signs users in through upstream OpenID Connect providers (single sign-on) and
// serves the Client-Server API's legacy SSO login flow ("Client login via SSO"):
//
//	GET /_matrix/client/v3/login/sso/redirect?redirectUrl=...           one provider: straight to it;
//	                                                                     several: a page to choose;
//	                                                                     OAuth 2.0 pages on: their
//	                                                                     sign-in page (web.go)
//	GET /_matrix/client/v3/login/sso/redirect/{idpId}?redirectUrl=...   to that provider
//	GET /_lattice/sso/callback                                           where providers send users back
//	POST /_lattice/sso/continue                                          the "Continue to <client>?" button
//	GET /_lattice/sso/web/{idpId}/start, /done                           sign-in on this server's web
//	                                                                     pages (web.go)
//	GET /_matrix/client/v3/auth/m.login.sso/fallback/web?session=...    the m.login.sso stage of
//	                                                                     user-interactive auth (uia.go)
//
// After a successful upstream sign-in the browser goes to the client's redirectUrl with a
// single-use loginToken appended (after a "Continue to <host>?" page unless the client is in
// sso.client_whitelist), which the client exchanges with POST /login {"type": "m.login.token"}
// (clientapi consumes the token from storage's login_tokens).
//
// Upstream authorisation uses the code flow with state, nonce and PKCE (S256). The three
// values live in a short-lived cookie sealed with AES-GCM under a key derived from the
// server's signing key, so a callback that does not come back to the browser that started
// the sign-in (a missing, altered or expired cookie, or another state) is refused.
//
// Accounts are linked to a provider identity by (provider id, subject) in user_external_ids,
// the table that the admin API's external_ids also edit, never by name or e-mail address.
// The first sign-in of an identity makes a new account whose localpart comes from the
// provider's localpart_claim, mapped onto the user ID grammar, with digits appended when it
// is taken (alice, alice1, alice2, ...); with allow_existing_users the existing account of that
// localpart is linked instead.
//
// # Use from other packages (the OAuth sign-in page)
//
// Other sign-in pages of this server reuse the same providers:
//
//	for _, p := range svc.Providers() { ... p.ID, p.Name, p.Icon, p.Brand ... }
//	// On the user's click: redirects the browser to the provider. continueURL is a path on
//	// this server ("/_lattice/oauth2/authorize?..."), never another origin.
//	err := svc.Start(w, r, idpID, continueURL)
//	// At continueURL, after the provider sent the user back and the account was resolved:
//	userID, ok := svc.SignedInUser(r) // from a sealed cookie valid for 5 minutes
//	svc.ClearSignedIn(w)              // once the page has used it
//
// SetWebSignIn with the OAuth server's pages adds the routes of web.go, which the sign-in
// page's "Sign in with <provider>" buttons (WebStartPath) lead to.
//
// Start returns ErrUnknownProvider for an idpID that is not configured. Errors at the
// callback (a refused claim, a provider error) are shown on this package's error page, as in
// the legacy flow.
//
// It must not import clientapi, syncapi or federationapi.
package sso

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/gorilla/mux"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/storage"
)

// CallbackPath is where providers send users back; register
// client_api.public_base_url + CallbackPath as the redirect URI at each provider.
const CallbackPath = "/_lattice/sso/callback"

// ErrUnknownProvider is Start's answer for an identity provider ID that is not configured.
var ErrUnknownProvider = errors.New("sso: unknown identity provider")

// Provider is what clients and sign-in pages show of an identity provider.
type Provider struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Icon  string `json:"icon,omitempty"`
	Brand string `json:"brand,omitempty"`
}

// Service is the single sign-on service.
type Service struct {
	cfg    *config.Config
	db     *storage.DB
	log    *slog.Logger
	seal   *sealer
	client *http.Client // to the providers: operator-configured, so private addresses are fine
	now    func() time.Time

	providers []*provider // in configuration order
	byID      map[string]*provider

	web WebSignIn // the web sign-in pages (web.go); nil: their routes answer 404

	// reserved reports user IDs that single sign-on must not create or take over (the
	// exclusive namespaces of application services); nil: none. Set before serving.
	reserved func(userID string) bool
}

// SetReserved sets the test of user IDs that sign-ins must neither create nor link: the
// exclusive user namespaces of application services.
func (s *Service) SetReserved(reserved func(userID string) bool) { s.reserved = reserved }

func (s *Service) isReserved(userID string) bool { return s.reserved != nil && s.reserved(userID) }

// provider is one configured provider and what its discovery document told.
type provider struct {
	cfg config.SSOProvider

	mu   sync.Mutex     // guards oidc
	oidc *oidc.Provider // nil until discovery succeeded
}

// New returns the service for cfg.SSO. secret seeds the key that seals the sign-in cookies;
// every process of one server must be given the same (cmd passes the signing key's seed).
func New(cfg *config.Config, db *storage.DB, secret []byte, log *slog.Logger) *Service {
	sum := sha256.Sum256(append([]byte("lattice sso cookie key\x00"), secret...))
	s := &Service{cfg: cfg, db: db, log: log, seal: newSealer(sum[:]),
		client: &http.Client{Timeout: 15 * time.Second}, now: time.Now, byID: map[string]*provider{}}
	for _, pc := range cfg.SSO.Providers {
		p := &provider{cfg: pc.WithDefaults()}
		s.providers = append(s.providers, p)
		s.byID[p.cfg.ID] = p
	}
	return s
}

// Enabled reports whether any provider is configured.
func (s *Service) Enabled() bool { return len(s.providers) > 0 }

// Providers lists the configured identity providers in configuration order.
func (s *Service) Providers() []Provider {
	out := make([]Provider, 0, len(s.providers))
	for _, p := range s.providers {
		out = append(out, Provider{ID: p.cfg.ID, Name: p.cfg.Name, Icon: p.cfg.Icon, Brand: p.cfg.Brand})
	}
	return out
}

// Register adds the SSO routes to root.
func (s *Service) Register(root *mux.Router) {
	v3 := root.PathPrefix("/_matrix/client/{version:(?:v3|r0)}").Subrouter()
	v3.HandleFunc("/login/sso/redirect", s.handleRedirect).Methods(http.MethodGet)
	v3.HandleFunc("/login/sso/redirect/{idpId}", s.handleRedirect).Methods(http.MethodGet)
	v3.HandleFunc("/auth/m.login.sso/fallback/web", s.handleUIAFallback).Methods(http.MethodGet)
	v3.HandleFunc("/auth/m.login.sso/fallback/web", s.handleUIAConfirm).Methods(http.MethodPost)
	root.HandleFunc(CallbackPath, s.handleCallback).Methods(http.MethodGet)
	root.HandleFunc(ContinuePath, s.handleContinue).Methods(http.MethodPost)
	s.registerWeb(root)
}

// discover returns the provider's OpenID configuration, fetching it on first use (and
// again after a failure), so that a provider that is down at start does not stop the server.
func (s *Service) discover(ctx context.Context, p *provider) (*oidc.Provider, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.oidc != nil {
		return p.oidc, nil
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, s.client), 15*time.Second)
	defer cancel()
	op, err := oidc.NewProvider(ctx, p.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	p.oidc = op // it keeps s.client (not ctx) for fetching keys later
	return op, nil
}

// callbackURL is the redirect URI registered at the providers.
func (s *Service) callbackURL() string {
	return strings.TrimSuffix(s.cfg.ClientAPI.PublicBaseURL, "/") + CallbackPath
}

// secureCookies reports whether cookies get the Secure attribute (an https public URL).
func (s *Service) secureCookies() bool {
	return strings.HasPrefix(s.cfg.ClientAPI.PublicBaseURL, "https://")
}
