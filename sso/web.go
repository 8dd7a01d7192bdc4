package sso

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/gorilla/mux"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
)

// Sign-in on this server's own web pages (the OAuth 2.0 sign-in and registration pages of
// oauthserver) through an upstream provider:
//
//	GET /_lattice/sso/web/{idpId}/start?next=/_lattice/oauth2/authorize?...   to the provider
//	GET /_lattice/sso/web/{idpId}/done?next=...                                back from it
//
//	GET /_lattice/account/sso/legacy?redirectUrl=...                           the legacy flow's end
//
// The pages link to WebStartPath(id) with the local page to continue with as next; after
// the upstream sign-in, done hands the user to the pages' SignInUser, which starts their
// browser session and continues at next (the authorization request, then consent).
//
// With the OAuth 2.0 API on, the legacy flow without a named provider
// (GET /login/sso/redirect, the m.login.sso flow that GET /login marks oauth_aware_preferred)
// goes through the same pages: the sign-in page (or with action=register the registration
// page), which offers the password and every provider, then legacyPath, which gives the
// signed-in user's login token to the client's redirectUrl as the legacy flow does.

// WebSignIn is the web sign-in an upstream sign-in continues to (oauthserver.Server).
type WebSignIn interface {
	// SignInUser starts the browser's signed-in session and continues to next.
	SignInUser(w http.ResponseWriter, r *http.Request, userID, next string)
	// SignedInUser is the user of the browser's signed-in session.
	SignedInUser(r *http.Request) (string, bool)
	// SignInURL is the sign-in (or registration) page that continues to next.
	SignInURL(next string, register bool) string
}

const webPrefix = "/_lattice/sso/web/"

// WebStartPath is the link of a sign-in page's "Sign in with <provider>" button; the page
// adds ?next=<local path>.
func WebStartPath(idpID string) string {
	return webPrefix + url.PathEscape(idpID) + "/start"
}

// SetWebSignIn turns on the web sign-in routes; call it before serving.
func (s *Service) SetWebSignIn(pages WebSignIn) { s.web = pages }

// legacyPath ends the legacy flow begun on the web sign-in pages; it is under
// /_lattice/account/ because the pages continue only to their own paths.
const legacyPath = "/_lattice/account/sso/legacy"

func (s *Service) registerWeb(root *mux.Router) {
	root.HandleFunc(webPrefix+"{idpId}/start", s.handleWebStart).Methods(http.MethodGet)
	root.HandleFunc(webPrefix+"{idpId}/done", s.handleWebDone).Methods(http.MethodGet)
	root.HandleFunc(legacyPath, s.handleWebLegacy).Methods(http.MethodGet)
}

// startWebLegacy begins the legacy flow on the web sign-in pages (handleRedirect, with the
// OAuth 2.0 API on and no provider named).
func (s *Service) startWebLegacy(w http.ResponseWriter, r *http.Request, redirectURL string) {
	next := legacyPath + "?" + url.Values{"redirectUrl": {redirectURL}}.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, s.web.SignInURL(next, r.URL.Query().Get("action") == "register"), http.StatusFound)
}

// handleWebLegacy handles GET /_lattice/account/sso/legacy?redirectUrl=...: the signed-in
// user of the pages gets a login token for the client, after the same "Continue to
// <client>?" page as a sign-in at a provider (a link to here is no way to collect tokens).
func (s *Service) handleWebLegacy(w http.ResponseWriter, r *http.Request) {
	if s.web == nil {
		httputil.WriteError(w, r, s.log, spec.NotFound("web sign-in is not enabled"))
		return
	}
	redirectURL := r.URL.Query().Get("redirectUrl")
	if !clientURI(redirectURL) {
		s.renderError(w, http.StatusBadRequest, "Sign-in failed", "The client's address is not valid.")
		return
	}
	userID, ok := s.web.SignedInUser(r)
	if !ok {
		http.Redirect(w, r, s.web.SignInURL(r.URL.RequestURI(), false), http.StatusFound)
		return
	}
	var pe *pageError
	if err := s.checkActive(r.Context(), userID); errors.As(err, &pe) {
		s.renderError(w, pe.status, pe.title, pe.detail)
		return
	} else if err != nil {
		s.log.Error("sso web legacy", "user_id", userID, "err", err)
		s.renderError(w, http.StatusInternalServerError, "Sign-in failed", "Something went wrong on this server.")
		return
	}
	s.finishLegacy(w, r, userID, redirectURL)
}

// webNext returns the request's next when it is a path on this server, else "/" (never
// another site). The sign-in pages narrow it further.
func webNext(r *http.Request) string {
	next := r.URL.Query().Get("next")
	if !localPath(next) || strings.Contains(next, "\\") {
		return "/_lattice/account/"
	}
	return next
}

// handleWebStart handles GET /_lattice/sso/web/{idpId}/start: the sign-in at the provider.
func (s *Service) handleWebStart(w http.ResponseWriter, r *http.Request) {
	if s.web == nil {
		httputil.WriteError(w, r, s.log, spec.NotFound("web sign-in is not enabled"))
		return
	}
	idpID := httputil.PathVar(r, "idpId")
	done := webPrefix + url.PathEscape(idpID) + "/done?" + url.Values{"next": {webNext(r)}}.Encode()
	err := s.Start(w, r, idpID, done)
	if errors.Is(err, ErrUnknownProvider) {
		httputil.WriteError(w, r, s.log, spec.NotFound("unknown identity provider"))
	} else if err != nil {
		s.log.Warn("sso discovery failed", "idp", idpID, "err", err)
		s.renderError(w, http.StatusBadGateway, "The sign-in provider cannot be reached", "It did not answer. Try again later.")
	}
}

// handleWebDone handles GET /_lattice/sso/web/{idpId}/done, where the callback sends the
// browser after the provider proved who the user is.
func (s *Service) handleWebDone(w http.ResponseWriter, r *http.Request) {
	if s.web == nil {
		httputil.WriteError(w, r, s.log, spec.NotFound("web sign-in is not enabled"))
		return
	}
	userID, ok := s.SignedInUser(r)
	s.ClearSignedIn(w)
	if !ok {
		s.renderError(w, http.StatusBadRequest, "This sign-in is not valid",
			"It has expired, was used already, or was started in another browser. Start signing in again.")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	s.web.SignInUser(w, r, userID, webNext(r))
}
