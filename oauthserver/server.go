// Package oauthserver makes Lattice its own OAuth 2.0 authorization server for the Matrix
// Client-Server API's "OAuth 2.0 API": server metadata discovery, dynamic client registration
// (RFC 7591), the authorization code grant with PKCE, the device authorization grant
// (RFC 8628), the refresh token grant and token revocation (RFC 7009), with server-rendered
// web pages for signing in, registering, consenting and managing the account.
//
// Sessions are ordinary Lattice devices with an expiring access token and a refresh token
// (clientapi/refresh.go), so the Client-Server API authenticates them as any other. Passwords,
// registration and the beginning and end of sessions go through *clientapi.Server, so that the
// failed-login limit, the registration mode and device-list updates are the same as for
// /login, /register and /logout. With email configured (SetEmail, email.go) the pages also
// register with a confirmed address, reset a forgotten password and manage the account's
// addresses. It must not import syncapi, federationapi or adminapi.
//
// Written with the standard library (crypto/rand, crypto/sha256, crypto/hmac, html/template):
// the server side of these grants for public clients is small and Matrix-specific, and a
// general OAuth framework would bring client types, storage interfaces and token formats that
// would all need adapting to devices.
package oauthserver

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"

	"github.com/lattice-chat/lattice/clientapi"
	"github.com/lattice-chat/lattice/email"
	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/ratelimit"
	"github.com/lattice-chat/lattice/storage"
)

// Paths of the endpoints and pages.
const (
	pathAuthorize = "/_lattice/oauth2/authorize"
	pathToken     = "/_lattice/oauth2/token"
	pathRegister  = "/_lattice/oauth2/register"
	pathRevoke    = "/_lattice/oauth2/revoke"
	pathDevice    = "/_lattice/oauth2/device"

	pathAccount       = "/_lattice/account/"
	pathLogin         = "/_lattice/account/login"
	pathSignUp        = "/_lattice/account/register"
	pathLogout        = "/_lattice/account/logout"
	pathLink          = "/_lattice/account/device"
	pathEndSession    = "/_lattice/account/sessions/end"
	pathPassword      = "/_lattice/account/password"
	pathProfile       = "/_lattice/account/profile"
	pathCrossSigning  = "/_lattice/account/cross_signing_reset"
	pathStylesheet    = "/_lattice/account/style.css"
	codeLifetime      = 10 * time.Minute
	deviceLifetime    = 10 * time.Minute
	devicePollDefault = 5 * time.Second
)

// SignInMethod is another way to sign in or register, offered as a link on the sign-in and
// registration pages: an upstream identity provider (package sso), a link sent by email.
// URL receives the query parameter next, the local page to continue with once signed in;
// the other package then calls SignInUser.
type SignInMethod struct {
	ID    string // a stable identifier, e.g. "oidc-github"
	Label string // shown on the button, e.g. "Continue with GitHub"
	URL   string // absolute path on this server, e.g. "/_lattice/sso/github/start"
}

// AccountLink is a section another package adds to the account page (linked identities,
// email addresses).
type AccountLink struct {
	Label string
	URL   string
}

// Server is the authorization server and its web pages.
type Server struct {
	cfg      *config.Config
	db       *storage.DB
	accounts *clientapi.Server
	log      *slog.Logger
	cookies  cookieSigner
	signer   *signingKey // of the ID tokens
	pages    *pages

	signIns     *ratelimit.Limiter // sign-in attempts, by client address
	clients     *ratelimit.Limiter // client registrations and device authorizations, by client address
	codeLookups *ratelimit.Limiter // user codes tried on the device page, by account and by address
	// lastCollect is when (Unix ms) this process last deleted unused clients.
	lastCollect atomic.Int64

	signInMethods []SignInMethod // set before Register, read-only after
	accountLinks  []AccountLink  // set before Register, read-only after
	email         *email.Service // nil: email is not configured; set before Register
}

// route is a page or endpoint: method, path, handler.
type route struct {
	method, path string
	h            http.HandlerFunc
}

// New returns the authorization server. cookieSecret signs the web pages' cookies, idKey
// the ID tokens (CookieSecret and SigningKey).
func New(cfg *config.Config, db *storage.DB, accounts *clientapi.Server, cookieSecret []byte, idKey *rsa.PrivateKey, log *slog.Logger) *Server {
	return &Server{cfg: cfg, db: db, accounts: accounts, log: log, signer: newSigningKey(idKey),
		cookies:     cookieSigner{secret: cookieSecret, secure: strings.HasPrefix(cfg.ClientAPI.PublicBaseURL, "https://"), validSince: db.WebSessionsValidSince},
		pages:       loadPages(),
		signIns:     ratelimit.New(1, 20),
		clients:     ratelimit.New(0.5, 20),
		codeLookups: ratelimit.New(0.2, 10),
	}
}

// AddSignInMethod offers another way to sign in on the sign-in and registration pages (the
// hook for upstream identity providers and email sign-in). Call it before Register.
func (s *Server) AddSignInMethod(m SignInMethod) { s.signInMethods = append(s.signInMethods, m) }

// AddAccountLink adds a link to the account page. Call it before Register.
func (s *Server) AddAccountLink(l AccountLink) { s.accountLinks = append(s.accountLinks, l) }

// Register adds the metadata, the OAuth endpoints and the web pages to r.
func (s *Server) Register(r *mux.Router) {
	get, post := http.MethodGet, http.MethodPost
	for _, rt := range append([]route{
		{get, "/_matrix/client/v1/auth_metadata", s.handleMetadata},
		{get, "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata", s.handleMetadata},
		// OpenID Connect discovery below the issuer: matrix-js-sdk's token refresher (Element
		// Web) reads the metadata from the issuer's well-known document.
		{get, "/.well-known/openid-configuration", s.handleMetadata},
		{get, "/.well-known/oauth-authorization-server", s.handleMetadata},
		{post, pathRegister, s.handleRegisterClient},
		{get, pathAuthorize, s.handleAuthorize},
		{post, pathAuthorize, s.handleConsent},
		{post, pathToken, s.handleToken},
		{post, pathRevoke, s.handleRevoke},
		{post, pathDevice, s.handleDeviceAuthorization},
		{get, pathKeys, s.handleKeys},

		{get, pathLogin, s.handleLoginPage},
		{post, pathLogin, s.handleLoginForm},
		{get, pathSignUp, s.handleSignUpPage},
		{post, pathSignUp, s.handleSignUpForm},
		{post, pathLogout, s.handleLogoutForm},
		{get, pathLink, s.handleLinkPage},
		{post, pathLink, s.handleLinkForm},
		{get, pathAccount, s.handleAccountPage},
		{post, pathEndSession, s.handleEndSessionForm},
		{post, pathPassword, s.handlePasswordForm},
		{post, pathProfile, s.handleProfileForm},
		{post, pathCrossSigning, s.handleCrossSigningForm},
		{get, pathStylesheet, s.handleStylesheet},
	}, s.emailRoutes()...) {
		r.Handle(rt.path, rt.h).Methods(rt.method)
	}
	r.Handle("/_lattice/account", http.RedirectHandler(pathAccount, http.StatusFound)).Methods(get)
}

// baseURL is where clients reach this server: client_api.public_base_url, or else the
// address the request came to.
func (s *Server) baseURL(r *http.Request) string {
	if b := s.cfg.ClientAPI.PublicBaseURL; b != "" {
		return strings.TrimSuffix(b, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// handleMetadata handles GET /_matrix/client/v1/auth_metadata (and its MSC2965 unstable
// path): the OAuth 2.0 authorization server metadata (RFC 8414) with the spec's account
// management extensions; the same document is the issuer's OpenID Connect discovery
// document (/.well-known/openid-configuration) and RFC 8414 well-known metadata.
func (s *Server) handleMetadata(w http.ResponseWriter, r *http.Request) {
	base := s.baseURL(r)
	httputil.WriteJSON(w, http.StatusOK, map[string]any{
		"issuer":                                     base + "/",
		"authorization_endpoint":                     base + pathAuthorize,
		"token_endpoint":                             base + pathToken,
		"registration_endpoint":                      base + pathRegister,
		"revocation_endpoint":                        base + pathRevoke,
		"device_authorization_endpoint":              base + pathDevice,
		"response_types_supported":                   []string{"code"},
		"grant_types_supported":                      []string{grantAuthorizationCode, grantRefreshToken, grantDeviceCode},
		"response_modes_supported":                   []string{"query", "fragment"},
		"code_challenge_methods_supported":           []string{"S256"},
		"token_endpoint_auth_methods_supported":      []string{"none"},
		"revocation_endpoint_auth_methods_supported": []string{"none"},
		"scopes_supported":                           []string{scopeOpenID, scopeAPI, scopeDevicePrefix + "*"},
		"jwks_uri":                                   base + pathKeys,
		"id_token_signing_alg_values_supported":      []string{"RS256"},
		"subject_types_supported":                    []string{"public"},
		"prompt_values_supported":                    []string{"create", "none"},
		"account_management_uri":                     base + pathAccount,
		"account_management_actions_supported":       accountActions,
	})
}

// accountActions are the account management actions the account page understands: the
// spec's, and the unstable names of MSC4191 that clients still send.
var accountActions = []string{
	"org.matrix.profile", "org.matrix.devices_list", "org.matrix.device_view", "org.matrix.device_delete",
	"org.matrix.cross_signing_reset",
	"org.matrix.sessions_list", "org.matrix.session_view", "org.matrix.session_end",
}

// ctx is the request's context without its cancellation, for writes that must finish.
func ctx(r *http.Request) context.Context { return context.WithoutCancel(r.Context()) }

// CookieSecret returns the key that signs the pages' cookies: oauth.cookie_secret, or else a
// random key kept in data_dir/oauth_cookie.key, made on first use.
func CookieSecret(cfg *config.Config) ([]byte, error) {
	if cfg.OAuth.CookieSecret != "" {
		return []byte(cfg.OAuth.CookieSecret), nil
	}
	path := filepath.Join(cfg.DataDir, "oauth_cookie.key")
	if b, err := os.ReadFile(path); err == nil && len(b) >= 32 {
		return b, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	key := []byte(config.RandomSecret(32))
	if err := os.WriteFile(path, key, 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return key, nil
}
