package sso

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"golang.org/x/oauth2"

	"github.com/lattice-chat/lattice/internal/httputil"
)

// flowCookie holds the sign-in under way between the redirect to the provider and its
// callback; flowTTL is how long the user has to sign in at the provider.
const (
	flowCookie  = "lattice_sso_flow"
	flowPurpose = "sso-flow"
	flowTTL     = 15 * time.Minute
)

// flow is the sealed content of the flow cookie.
type flow struct {
	IdP      string `json:"i"`
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`           // PKCE code verifier
	Redirect string `json:"r,omitempty"` // legacy flow: the client's redirectUrl
	Continue string `json:"c,omitempty"` // Start: the path to continue at on this server
	// UIASession is the user-interactive authentication session whose m.login.sso stage
	// this sign-in completes (uia.go).
	UIASession string `json:"u,omitempty"`
	Expires    int64  `json:"e"` // unix seconds
}

// handleRedirect handles GET /login/sso/redirect and /login/sso/redirect/{idpId}: it sends
// the browser to the provider, or with several providers and none named, shows a page to
// choose one.
func (s *Service) handleRedirect(w http.ResponseWriter, r *http.Request) {
	redirectURL := r.URL.Query().Get("redirectUrl")
	if redirectURL == "" {
		httputil.WriteError(w, r, s.log, spec.MissingParam("redirectUrl is required"))
		return
	}
	if !clientURI(redirectURL) {
		httputil.WriteError(w, r, s.log, spec.InvalidParam("redirectUrl must be an absolute URI of a client"))
		return
	}
	idpID, named := idpFromPath(r)
	if !named && s.web != nil {
		// OAuth 2.0 aware clients: this server's sign-in page, which offers every way in.
		s.startWebLegacy(w, r, redirectURL)
		return
	}
	if !named {
		switch len(s.providers) {
		case 0:
			httputil.WriteError(w, r, s.log, spec.NotFound("single sign-on is not configured"))
			return
		case 1:
			idpID = s.providers[0].cfg.ID
		default:
			s.renderChooser(w, redirectURL)
			return
		}
	}
	p, ok := s.byID[idpID]
	if !ok {
		httputil.WriteError(w, r, s.log, spec.NotFound("unknown identity provider"))
		return
	}
	if err := s.start(w, r, p, flow{Redirect: redirectURL}); err != nil {
		s.renderError(w, http.StatusBadGateway, "The sign-in provider cannot be reached",
			fmt.Sprintf("%s did not answer. Try again later.", p.cfg.Name))
		s.log.Warn("sso discovery failed", "idp", p.cfg.ID, "err", err)
	}
}

// Start begins a sign-in at the provider idpID for another page of this server: the browser
// is redirected to the provider, and after a successful sign-in to continueURL (a path on
// this server, such as "/_lattice/oauth2/authorize?..."), where SignedInUser tells who
// signed in. ErrUnknownProvider for an idpID that is not configured; an error too for a
// continueURL that is not a local path, or a provider that cannot be reached.
func (s *Service) Start(w http.ResponseWriter, r *http.Request, idpID, continueURL string) error {
	p, ok := s.byID[idpID]
	if !ok {
		return ErrUnknownProvider
	}
	if !localPath(continueURL) {
		return errors.New("sso: continueURL must be a path on this server")
	}
	return s.start(w, r, p, flow{Continue: continueURL})
}

// clientURI reports whether u can be a client's redirectUrl: absolute, and of no scheme that
// would run code in this server's page (javascript:, data:, vbscript:).
func clientURI(u string) bool {
	p, err := url.Parse(u)
	if err != nil || p.Scheme == "" {
		return false
	}
	switch strings.ToLower(p.Scheme) {
	case "javascript", "data", "vbscript", "file", "blob":
		return false
	}
	return true
}

// localPath reports whether u is an absolute path on this server ("/x", not "//host/x").
func localPath(u string) bool {
	return strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//") && !strings.HasPrefix(u, "/\\")
}

// start seals f with new state, nonce and PKCE verifier into the flow cookie and redirects
// to the provider's authorization endpoint.
func (s *Service) start(w http.ResponseWriter, r *http.Request, p *provider, f flow) error {
	op, err := s.discover(r.Context(), p)
	if err != nil {
		return err
	}
	f.IdP, f.State, f.Nonce, f.Verifier = p.cfg.ID, randomString(), randomString(), oauth2.GenerateVerifier()
	f.Expires = s.now().Add(flowTTL).Unix()
	if err := s.setCookie(w, flowCookie, CallbackPath, flowPurpose, f, flowTTL); err != nil {
		return err
	}
	target := s.oauth2Config(p, op.Endpoint()).AuthCodeURL(f.State,
		oauth2.S256ChallengeOption(f.Verifier), oauth2.SetAuthURLParam("nonce", f.Nonce))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusFound)
	return nil
}

func (s *Service) oauth2Config(p *provider, ep oauth2.Endpoint) *oauth2.Config {
	return &oauth2.Config{ClientID: p.cfg.ClientID, ClientSecret: p.cfg.ClientSecret,
		Endpoint: ep, RedirectURL: s.callbackURL(), Scopes: p.cfg.Scopes}
}

// idpFromPath returns the {idpId} of the path, and whether the route has one.
func idpFromPath(r *http.Request) (string, bool) {
	if _, ok := mux.Vars(r)["idpId"]; !ok {
		return "", false
	}
	return httputil.PathVar(r, "idpId"), true
}

func randomString() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
