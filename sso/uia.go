package sso

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

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

// The confirmation page's form is bound to the browser that was shown it: the page sets a
// sealed cookie holding the session and a random value that the form repeats, so a form
// posted from another site (without the cookie: SameSite=Lax) or with another session fails.
const (
	confirmCookie  = "lattice_sso_uia"
	confirmPurpose = "sso-uia-confirm"
	confirmTTL     = 15 * time.Minute
	fallbackPath   = "/_matrix/client/v3/auth/m.login.sso/fallback/web"
)

type uiaConfirm struct {
	Session string `json:"s"`
	CSRF    string `json:"c"`
	Expires int64  `json:"e"`
}

// confirmCookieName is the confirmation cookie of one session, so that pages of several
// sessions open in one browser do not replace each other's.
func confirmCookieName(session string) string {
	sum := sha256.Sum256([]byte(session))
	return confirmCookie + "_" + hex.EncodeToString(sum[:8])
}

// uiaSession returns the issued session named by the request, or shows why not.
func (s *Service) uiaSession(w http.ResponseWriter, r *http.Request, session string) (storage.UIASession, bool) {
	if session == "" {
		httputil.WriteError(w, r, s.log, spec.MissingParam("session is required"))
		return storage.UIASession{}, false
	}
	if len(s.providers) == 0 {
		httputil.WriteError(w, r, s.log, spec.NotFound("single sign-on is not configured"))
		return storage.UIASession{}, false
	}
	sess, err := s.db.UIASession(r.Context(), session, s.now().UnixMilli())
	if errors.Is(err, storage.ErrNotFound) {
		s.renderError(w, http.StatusBadRequest, "Unknown request",
			"This confirmation link is not valid: it has expired or was used already. Try again from your client.")
		return storage.UIASession{}, false
	} else if err != nil {
		s.log.Error("sso UIA session", "err", err)
		s.renderError(w, http.StatusInternalServerError, "Not confirmed", "Something went wrong on this server.")
		return storage.UIASession{}, false
	}
	return sess, true
}

// handleUIAFallback handles GET /auth/m.login.sso/fallback/web: a page that says what the
// client is trying to do and for whom, with a button per provider (or only the one named by
// idp=...) that starts the sign-in. The spec: "Simply redirecting the user to the SSO system
// is insufficient".
func (s *Service) handleUIAFallback(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.uiaSession(w, r, r.URL.Query().Get("session"))
	if !ok {
		return
	}
	idpID := r.URL.Query().Get("idp")
	if _, known := s.byID[idpID]; idpID != "" && !known {
		httputil.WriteError(w, r, s.log, spec.NotFound("unknown identity provider"))
		return
	}
	c := uiaConfirm{Session: sess.SessionID, CSRF: randomString(), Expires: s.now().Add(confirmTTL).Unix()}
	if err := s.setCookie(w, confirmCookieName(sess.SessionID), "/_matrix/client/", confirmPurpose, c, confirmTTL); err != nil {
		s.renderError(w, http.StatusInternalServerError, "Not confirmed", "Something went wrong on this server.")
		return
	}
	type item struct{ ID, Name string }
	var items []item
	for _, p := range s.providers {
		if idpID == "" || idpID == p.cfg.ID {
			items = append(items, item{p.cfg.ID, p.cfg.Name})
		}
	}
	writePage(w, http.StatusOK, "reauth", struct {
		Description, UserID, Session, CSRF, Action string
		Providers                                  []item
	}{sess.Description, sess.UserID, sess.SessionID, c.CSRF, fallbackPath, items})
}

// handleUIAConfirm handles POST /auth/m.login.sso/fallback/web, the confirmation page's
// button: the sign-in at the chosen provider starts.
func (s *Service) handleUIAConfirm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, http.StatusBadRequest, "Not confirmed", "The form could not be read.")
		return
	}
	var c uiaConfirm
	session := r.PostForm.Get("session")
	err := s.readCookie(r, confirmCookieName(session), confirmPurpose, &c)
	if err != nil || c.Expires < s.now().Unix() || c.Session != session || c.CSRF == "" || c.CSRF != r.PostForm.Get("csrf") {
		s.renderError(w, http.StatusForbidden, "Not confirmed",
			"This confirmation was not started in this browser, or has expired. Try again from your client.")
		return
	}
	sess, ok := s.uiaSession(w, r, session)
	if !ok {
		return
	}
	p, ok := s.byID[r.PostForm.Get("idp")]
	if !ok {
		httputil.WriteError(w, r, s.log, spec.NotFound("unknown identity provider"))
		return
	}
	s.clearCookie(w, confirmCookieName(session), "/_matrix/client/")
	if err := s.start(w, r, p, flow{UIASession: sess.SessionID}); err != nil {
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
	var sess storage.UIASession
	if err == nil {
		sess, err = s.db.UIASession(r.Context(), f.UIASession, s.now().UnixMilli())
		if errors.Is(err, storage.ErrNotFound) {
			err = refused(http.StatusBadRequest, "Not confirmed", "The request to confirm has expired or was used already. Try again from your client.")
		}
	}
	if err == nil && sess.UserID != userID {
		err = refused(http.StatusForbidden, "Not confirmed",
			"You signed in as %s, but the request to confirm is for %s. Sign in with that account's identity.", userID, sess.UserID)
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
