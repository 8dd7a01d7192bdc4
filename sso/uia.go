package sso

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// The m.login.sso stage of user-interactive authentication ("Single Sign-On" under
// "Authentication types", and "Fallback"): a client opens
// GET /_matrix/client/v3/auth/m.login.sso/fallback/web?session=..., the user signs in again at
// an identity provider, and the callback records that the account linked to that identity
// completed the session (uia_sso_completions), which clientapi accepts once. No account is
// created or linked here: an identity not linked to any account proves nothing.

// uiaCompletionTTL is how long a completed stage waits for the client's retry.
const uiaCompletionTTL = 15 * 60 * 1000 // ms

// handleUIAFallback handles GET /auth/m.login.sso/fallback/web: with one provider (or
// idp=... chosen on the page) it starts the sign-in, else it shows a page to choose.
func (s *Service) handleUIAFallback(w http.ResponseWriter, r *http.Request) {
	session := r.URL.Query().Get("session")
	if session == "" {
		httputil.WriteError(w, r, s.log, spec.MissingParam("session is required"))
		return
	}
	if len(s.providers) == 0 {
		httputil.WriteError(w, r, s.log, spec.NotFound("single sign-on is not configured"))
		return
	}
	idpID := r.URL.Query().Get("idp")
	if idpID == "" && len(s.providers) == 1 {
		idpID = s.providers[0].cfg.ID
	}
	if idpID == "" {
		type item struct{ ID, Name, Href string }
		var items []item
		for _, p := range s.providers {
			q := url.Values{"session": {session}, "idp": {p.cfg.ID}}
			items = append(items, item{p.cfg.ID, p.cfg.Name, "?" + q.Encode()})
		}
		writePage(w, http.StatusOK, "reauth", struct{ Providers []item }{items})
		return
	}
	p, ok := s.byID[idpID]
	if !ok {
		httputil.WriteError(w, r, s.log, spec.NotFound("unknown identity provider"))
		return
	}
	if err := s.start(w, r, p, flow{UIASession: session}); err != nil {
		s.log.Warn("sso discovery failed", "idp", p.cfg.ID, "err", err)
		s.renderError(w, http.StatusBadGateway, "The sign-in provider cannot be reached", p.cfg.Name+" did not answer. Try again later.")
	}
}

// finishUIA records the completed stage for the account linked to the identity and shows the
// page that tells the client (window.onAuthDone, or a message "authDone" to its opener).
func (s *Service) finishUIA(w http.ResponseWriter, r *http.Request, f flow, subject string) {
	userID, err := s.db.UserByExternalID(r.Context(), f.IdP, subject)
	if errors.Is(err, storage.ErrNotFound) {
		s.renderError(w, http.StatusForbidden, "Not confirmed", "This identity is not linked to any account on this server.")
		return
	}
	if err == nil {
		err = s.checkActive(r.Context(), userID)
	}
	if err == nil {
		now := s.now().UnixMilli()
		err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
			return tx.InsertUIASSOCompletion(r.Context(), f.UIASession, userID, now+uiaCompletionTTL, now)
		})
	}
	var pe *pageError
	if errors.As(err, &pe) {
		s.renderError(w, pe.status, pe.title, pe.detail)
		return
	} else if err != nil {
		s.log.Error("sso UIA completion", "user_id", userID, "err", err)
		s.renderError(w, http.StatusInternalServerError, "Not confirmed", "Something went wrong on this server.")
		return
	}
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	n := base64.RawStdEncoding.EncodeToString(nonce)
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-"+n+"'; frame-ancestors 'none'")
	writePage(w, http.StatusOK, "reauthdone", struct{ UserID, Nonce string }{userID, n})
}
