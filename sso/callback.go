package sso

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// userCookie carries the user that a sign-in begun with Start proved, to its continueURL.
const (
	userCookie  = "lattice_sso_user"
	userPurpose = "sso-user"
	userTTL     = 5 * time.Minute
)

type signedIn struct {
	UserID  string `json:"u"`
	IdP     string `json:"i"`
	Expires int64  `json:"e"`
}

// pageError is a failure shown to the user on the error page with its HTTP status.
type pageError struct {
	status int
	title  string
	detail string
}

func (e *pageError) Error() string { return e.title + ": " + e.detail }

func refused(status int, title, detail string, args ...any) *pageError {
	return &pageError{status: status, title: title, detail: fmt.Sprintf(detail, args...)}
}

// handleCallback handles GET /_lattice/sso/callback, where the provider sends the browser
// back with a code (or an error) and the state.
func (s *Service) handleCallback(w http.ResponseWriter, r *http.Request) {
	var f flow
	err := s.readCookie(r, flowCookie, flowPurpose, &f)
	s.clearCookie(w, flowCookie, CallbackPath) // one callback per flow, whatever its outcome
	subject, userID, err := s.callback(r, f, err)
	var pe *pageError
	if errors.As(err, &pe) {
		s.renderError(w, pe.status, pe.title, pe.detail)
		return
	} else if err != nil {
		s.log.Error("sso callback", "idp", f.IdP, "err", err)
		s.renderError(w, http.StatusInternalServerError, "Sign-in failed", "Something went wrong on this server. Try again later.")
		return
	}
	if f.UIASession != "" {
		s.finishUIA(w, r, f, subject)
		return
	}
	if f.Continue != "" {
		if err := s.setCookie(w, userCookie, "/", userPurpose, signedIn{UserID: userID, IdP: f.IdP, Expires: s.now().Add(userTTL).Unix()}, userTTL); err != nil {
			s.renderError(w, http.StatusInternalServerError, "Sign-in failed", "Something went wrong on this server.")
			return
		}
		http.Redirect(w, r, f.Continue, http.StatusFound)
		return
	}
	s.finishLegacy(w, r, userID, f.Redirect)
}

// callback checks the callback against its flow cookie, exchanges the code, checks the
// claims and returns the identity's subject and account (no account for a flow that
// completes a UIA stage). cookieErr is the flow cookie's error.
func (s *Service) callback(r *http.Request, f flow, cookieErr error) (subject, userID string, err error) {
	q := r.URL.Query()
	// 1. The browser that started this sign-in, within its time, coming back with its state.
	if cookieErr != nil || f.Expires < s.now().Unix() || q.Get("state") == "" || q.Get("state") != f.State {
		return "", "", refused(http.StatusBadRequest, "This sign-in link is not valid",
			"It has expired, was used already, or was opened in another browser than the one that started the sign-in. Start signing in again from your Matrix client.")
	}
	p, ok := s.byID[f.IdP]
	if !ok {
		return "", "", refused(http.StatusBadRequest, "This sign-in link is not valid", "The sign-in provider is no longer configured.")
	}
	// 2. The provider's answer: an error, or a code.
	if e := q.Get("error"); e != "" {
		status := http.StatusBadRequest
		if e == "access_denied" {
			status = http.StatusForbidden
		}
		return "", "", refused(status, "Sign-in was not completed", "%s answered: %s %s", p.cfg.Name, e, q.Get("error_description"))
	}
	code := q.Get("code")
	if code == "" {
		return "", "", refused(http.StatusBadRequest, "Sign-in was not completed", "%s sent no authorization code.", p.cfg.Name)
	}
	// 3. The code for tokens (with the PKCE verifier); the ID token checked with the nonce.
	claims, err := s.exchange(r.Context(), p, f, code)
	if err != nil {
		return "", "", err
	}
	// 4. The identity, and the operator's requirements on it.
	subject = claimString(claims, p.cfg.SubjectClaim)
	if subject == "" {
		return "", "", refused(http.StatusForbidden, "Sign-in refused", "%s did not say who you are (no %q claim).", p.cfg.Name, p.cfg.SubjectClaim)
	}
	if err := checkClaims(p.cfg, claims); err != nil {
		return "", "", err
	}
	// 5. The linked account, or a new one (not for re-authentication: uia.go).
	if f.UIASession != "" {
		return subject, "", nil
	}
	userID, err = s.resolveUser(r.Context(), p, subject, claims)
	return subject, userID, err
}

// exchange redeems the code and returns the claims of the verified ID token, completed with
// those of the userinfo endpoint when the provider has one.
func (s *Service) exchange(ctx context.Context, p *provider, f flow, code string) (map[string]any, error) {
	op, err := s.discover(ctx, p)
	if err != nil {
		return nil, refused(http.StatusBadGateway, "The sign-in provider cannot be reached", "%s did not answer. Try again later.", p.cfg.Name)
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, s.client), 30*time.Second)
	defer cancel()
	tok, err := s.oauth2Config(p, op.Endpoint()).Exchange(ctx, code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			return nil, refused(http.StatusBadRequest, "Sign-in was not completed", "%s did not accept the sign-in (it may have been used already). Start again.", p.cfg.Name)
		}
		s.log.Warn("sso code exchange failed", "idp", p.cfg.ID, "err", err)
		return nil, refused(http.StatusBadGateway, "Sign-in was not completed", "%s did not complete the sign-in. Try again later.", p.cfg.Name)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, refused(http.StatusBadGateway, "Sign-in was not completed", "%s sent no ID token.", p.cfg.Name)
	}
	idt, err := op.Verifier(&oidc.Config{ClientID: p.cfg.ClientID}).Verify(ctx, raw)
	if err != nil {
		s.log.Warn("sso ID token refused", "idp", p.cfg.ID, "err", err)
		return nil, refused(http.StatusBadGateway, "Sign-in was not completed", "The ID token of %s could not be verified.", p.cfg.Name)
	}
	if idt.Nonce != f.Nonce {
		return nil, refused(http.StatusBadRequest, "This sign-in link is not valid", "The answer of %s belongs to another sign-in. Start again.", p.cfg.Name)
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return nil, refused(http.StatusBadGateway, "Sign-in was not completed", "The ID token of %s could not be read.", p.cfg.Name)
	}
	if op.UserInfoEndpoint() != "" {
		info, err := op.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			s.log.Warn("sso userinfo failed", "idp", p.cfg.ID, "err", err)
			return nil, refused(http.StatusBadGateway, "Sign-in was not completed", "%s did not tell who you are. Try again later.", p.cfg.Name)
		}
		if info.Subject != idt.Subject {
			return nil, refused(http.StatusBadGateway, "Sign-in was not completed", "%s described another user than the one who signed in.", p.cfg.Name)
		}
		extra := map[string]any{}
		if err := info.Claims(&extra); err == nil {
			for k, v := range extra {
				if _, ok := claims[k]; !ok { // the signed ID token wins
					claims[k] = v
				}
			}
		}
	}
	return claims, nil
}

// The "Continue to <client>?" page posts its button to ContinuePath; the sign-in waits in a
// sealed cookie that only this server's own pages send back (SameSite=Lax: no cross-site
// POST carries it), so the login token is made when the browser leaves for the client and
// can live as briefly as the spec asks.
const (
	ContinuePath   = "/_lattice/sso/continue"
	pendingCookie  = "lattice_sso_pending"
	pendingPurpose = "sso-pending"
	pendingTTL     = 10 * time.Minute
)

// pending is the sign-in waiting for its confirmation. Flow is also in the page's form, so the
// button continues the sign-in the page showed: another one started in the same browser
// meanwhile (a page of someone else's opening the flow for their redirectUrl in a popup)
// replaces the cookie, and the first page's button is then refused instead of sending the
// token to the other client.
type pending struct {
	Flow     string `json:"f"`
	UserID   string `json:"u"`
	Redirect string `json:"r"`
	Expires  int64  `json:"e"`
}

// finishLegacy ends the legacy flow: a whitelisted client gets a login token appended to
// its redirectUrl at once; any other, a page asking the user whether to continue to it.
func (s *Service) finishLegacy(w http.ResponseWriter, r *http.Request, userID, redirectURL string) {
	if whitelisted(s.cfg.SSO.ClientWhitelist, redirectURL) {
		s.redirectWithToken(w, r, userID, redirectURL)
		return
	}
	flow := randomString()
	err := s.setCookie(w, pendingCookie, "/_lattice/sso/", pendingPurpose,
		pending{Flow: flow, UserID: userID, Redirect: redirectURL, Expires: s.now().Add(pendingTTL).Unix()}, pendingTTL)
	if err != nil {
		s.renderError(w, http.StatusInternalServerError, "Sign-in failed", "Something went wrong on this server.")
		return
	}
	s.renderConfirm(w, userID, redirectURL, flow)
}

// handleContinue handles POST /_lattice/sso/continue, the confirmation page's button.
func (s *Service) handleContinue(w http.ResponseWriter, r *http.Request) {
	var p pending
	err := s.readCookie(r, pendingCookie, pendingPurpose, &p)
	s.clearCookie(w, pendingCookie, "/_lattice/sso/")
	if err != nil || p.Expires < s.now().Unix() || p.UserID == "" ||
		subtle.ConstantTimeCompare([]byte(r.PostFormValue("flow")), []byte(p.Flow)) != 1 {
		s.renderError(w, http.StatusBadRequest, "This sign-in is not valid",
			"It has expired, was used already, was started in another browser, or another sign-in was started in this browser since. Start signing in again from your Matrix client.")
		return
	}
	s.redirectWithToken(w, r, p.UserID, p.Redirect)
}

// redirectWithToken sends the browser to the client's redirectURL with a new login token.
func (s *Service) redirectWithToken(w http.ResponseWriter, r *http.Request, userID, redirectURL string) {
	token := httputil.NewAccessToken()
	now := s.now()
	err := s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		return tx.InsertLoginToken(r.Context(), httputil.HashToken(token), userID,
			now.Add(s.cfg.SSO.RedirectTokenLifetime).UnixMilli(), now.UnixMilli())
	})
	if err != nil {
		s.log.Error("sso login token", "user_id", userID, "err", err)
		s.renderError(w, http.StatusInternalServerError, "Sign-in failed", "Something went wrong on this server.")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, withLoginToken(redirectURL, token), http.StatusFound)
}

// withLoginToken appends loginToken to the query of redirectURL, leaving the rest as the
// client wrote it except any loginToken parameters already there, which are removed ("If it
// already includes one or more loginToken parameters, they should be removed before adding
// the new one"): a link crafted with someone else's token must not log the user in as them.
func withLoginToken(redirectURL, token string) string {
	base, frag, hasFrag := strings.Cut(redirectURL, "#")
	base, query, _ := strings.Cut(base, "?")
	var kept []string
	for _, param := range strings.Split(query, "&") {
		name, _, _ := strings.Cut(param, "=")
		if n, err := url.QueryUnescape(name); param == "" || (err == nil && n == "loginToken") || name == "loginToken" {
			continue
		}
		kept = append(kept, param)
	}
	out := base + "?" + strings.Join(append(kept, "loginToken="+url.QueryEscape(token)), "&")
	if hasFrag {
		out += "#" + frag
	}
	return out
}

// whitelisted reports whether redirectURL belongs to a client of sso.client_whitelist: the
// same scheme and host (with port) as an entry, no user info, and a path under the entry's
// path (at a "/" boundary, without dot segments). A plain string prefix would let
// "https://app.example" admit "https://app.example.evil/".
func whitelisted(list []string, redirectURL string) bool {
	u, err := url.Parse(redirectURL)
	if err != nil || u.User != nil || u.Opaque != "" || strings.Contains(redirectURL, "\\") {
		return false
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	path := u.Path
	if path == "" {
		path = "/"
	}
	for _, entry := range list {
		w, err := url.Parse(entry)
		if err != nil || w.Opaque != "" || !strings.EqualFold(w.Scheme, u.Scheme) || !strings.EqualFold(w.Host, u.Host) {
			continue
		}
		prefix := w.Path
		if prefix == "" {
			prefix = "/"
		}
		if path == prefix || strings.HasPrefix(path, prefix) && (strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/') {
			return true
		}
	}
	return false
}

// SignedInUser returns the user that a sign-in begun with Start proved, if its cookie is
// present and not expired.
func (s *Service) SignedInUser(r *http.Request) (string, bool) {
	var u signedIn
	if err := s.readCookie(r, userCookie, userPurpose, &u); err != nil || u.Expires < s.now().Unix() || u.UserID == "" {
		return "", false
	}
	return u.UserID, true
}

// ClearSignedIn removes the cookie SignedInUser reads.
func (s *Service) ClearSignedIn(w http.ResponseWriter) {
	s.clearCookie(w, userCookie, "/")
}
