package oauthserver

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/email"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// Email on the pages (package email does the mails and the sessions): registration with a
// verified address when email.registration_requires_email is on, a forgotten password reset
// from the sign-in page, and the account's addresses on the account page. The mailed link
// opens email's confirm page; once its button is pressed, the reset and add flows continue
// on a page of this package (the session's next_link, naming the client secret the page
// made and the address), and registration continues in the browser that asked, whose
// "check your mail" page holds the form: the registration form's values in hidden fields of
// a page that is not cached, the password sealed (AES-GCM under a key derived from the
// cookie secret) so that it is never in the page in clear (no server-side state to keep for
// a registration that may never finish).

// Paths of the email pages.
const (
	pathSignUpEmail  = "/_lattice/account/register/email"
	pathForgot       = "/_lattice/account/password/forgot"
	pathReset        = "/_lattice/account/password/reset"
	pathEmailAdd     = "/_lattice/account/email/add"
	pathEmailConfirm = "/_lattice/account/email/confirm"
	pathEmailDelete  = "/_lattice/account/email/delete"
)

// SetEmail makes the pages offer email (nil: email is not configured). Call it before
// Register.
func (s *Server) SetEmail(e *email.Service) { s.email = e }

func (s *Server) emailRoutes() []route {
	if s.email == nil {
		return nil
	}
	get, post := http.MethodGet, http.MethodPost
	return []route{
		{post, pathSignUpEmail, s.handleSignUpEmailForm},
		{get, pathForgot, s.handleForgotPage},
		{post, pathForgot, s.handleForgotForm},
		{get, pathReset, s.handleResetPage},
		{post, pathReset, s.handleResetForm},
		{post, pathEmailAdd, s.handleEmailAddForm},
		{get, pathEmailConfirm, s.handleEmailConfirmPage},
		{post, pathEmailConfirm, s.handleEmailConfirmForm},
		{post, pathEmailDelete, s.handleEmailDeleteForm},
	}
}

type emailPage struct {
	Mode                            string // check, forgot, reset, add, or "" (a message)
	Notice                          string
	Email, ClientSecret             string
	Next, Username, Password, Token string
	Continue                        string
}

// signUpWithEmail handles the registration form when an address is required: it mails the
// link and shows the page that finishes the registration once the link is confirmed.
func (s *Server) signUpWithEmail(w http.ResponseWriter, r *http.Request, ws *webSession, p registerPage) {
	f := r.PostForm
	p.Email = f.Get("email")
	secret := email.NewClientSecret()
	_, err := s.email.RequestVerification(r.Context(), email.Request{Email: strings.TrimSpace(p.Email), ClientSecret: secret,
		SendAttempt: 1, Purpose: email.PurposeRegister, IP: httputil.RemoteIP(r)})
	if err != nil {
		status, key := matrixErrorPage(err)
		s.render(w, r, status, "register", "register_title", ws, key, p)
		return
	}
	s.render(w, r, http.StatusOK, "email", "email_title", ws, "", emailPage{Mode: "check", Email: strings.TrimSpace(p.Email),
		ClientSecret: secret, Next: p.Next, Username: p.Username, Password: s.cookies.seal(f.Get("password")), Token: p.Token})
}

// handleSignUpEmailForm handles the "check your mail" page's form: the account is made with
// the confirmed address, and the user continues where registration was going.
func (s *Server) handleSignUpEmailForm(w http.ResponseWriter, r *http.Request) {
	ws, ok := s.checkForm(w, r)
	if !ok {
		return
	}
	f := r.PostForm
	page := emailPage{Mode: "check", Email: f.Get("email"), ClientSecret: f.Get("client_secret"), Next: safeNext(f.Get("next")),
		Username: f.Get("username"), Password: f.Get("password"), Token: f.Get("token")}
	sid, err := s.email.SessionFor(r.Context(), page.ClientSecret, page.Email)
	if err != nil {
		s.emailError(w, r, ws, err, page)
		return
	}
	token := ""
	if s.registerPage("").NeedToken {
		token = page.Token
	}
	password, ok := s.cookies.unseal(page.Password)
	if !ok {
		s.emailError(w, r, ws, email.ErrNoSession, page)
		return
	}
	userID, err := s.accounts.RegisterAccountWithEmail(r.Context(), httputil.RemoteIP(r), page.Username, password, token, sid, page.ClientSecret)
	if err != nil {
		s.emailError(w, r, ws, err, page)
		return
	}
	s.SignInUser(w, r, userID, page.Next)
}

// emailError shows a failed step of an email page: not confirmed yet (the same page again),
// an unknown or used session, or the client API's error.
func (s *Server) emailError(w http.ResponseWriter, r *http.Request, ws *webSession, err error, page emailPage) {
	switch {
	case errors.Is(err, email.ErrNotValidated):
		s.render(w, r, http.StatusBadRequest, "email", "email_title", ws, "err_email_pending", page)
	case errors.Is(err, email.ErrNoSession):
		s.render(w, r, http.StatusBadRequest, "email", "email_title", ws, "err_email_session", emailPage{})
	default:
		status, key := matrixErrorPage(err)
		var me spec.MatrixError
		if key == "" && errors.As(err, &me) {
			key = me.Err
		}
		if status == http.StatusInternalServerError {
			s.log.Error("email page", "err", err)
		}
		s.render(w, r, status, "email", "email_title", ws, key, page)
	}
}

// handleForgotPage handles GET /_lattice/account/password/forgot.
func (s *Server) handleForgotPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "email", "forgot_title", s.session(w, r), "", emailPage{Mode: "forgot"})
}

// handleForgotForm mails a reset link. Whether an account has the address is not said.
func (s *Server) handleForgotForm(w http.ResponseWriter, r *http.Request) {
	ws, ok := s.checkForm(w, r)
	if !ok {
		return
	}
	addr := strings.TrimSpace(r.PostForm.Get("email"))
	secret := email.NewClientSecret()
	next := s.baseURL(r) + pathReset + "?" + url.Values{"client_secret": {secret}, "email": {addr}}.Encode()
	_, err := s.email.RequestVerification(r.Context(), email.Request{Email: addr, ClientSecret: secret, SendAttempt: 1,
		NextLink: next, Purpose: email.PurposeReset, IP: httputil.RemoteIP(r)})
	var he *httputil.Error
	if err != nil && !(errors.As(err, &he) && he.Code == "M_THREEPID_NOT_FOUND") {
		status, key := matrixErrorPage(err)
		s.render(w, r, status, "email", "forgot_title", ws, key, emailPage{Mode: "forgot", Email: addr})
		return
	}
	_, msgs := messagesFor(r)
	s.render(w, r, http.StatusOK, "email", "forgot_title", ws, "", emailPage{Notice: msgs["forgot_sent"]})
}

// handleResetPage handles GET /_lattice/account/password/reset, where a confirmed reset
// link leads: the new password's form.
func (s *Server) handleResetPage(w http.ResponseWriter, r *http.Request) {
	ws := s.session(w, r)
	q := r.URL.Query()
	page := emailPage{Mode: "reset", Email: q.Get("email"), ClientSecret: q.Get("client_secret")}
	if sid, err := s.email.SessionFor(r.Context(), page.ClientSecret, page.Email); err != nil {
		s.emailError(w, r, ws, err, page)
		return
	} else if _, err := s.email.Validated(r.Context(), email.PurposeReset, sid, page.ClientSecret); err != nil {
		s.emailError(w, r, ws, err, emailPage{})
		return
	}
	s.render(w, r, http.StatusOK, "email", "reset_title", ws, "", page)
}

// handleResetForm sets the new password; every session of the account is signed out.
func (s *Server) handleResetForm(w http.ResponseWriter, r *http.Request) {
	ws, ok := s.checkForm(w, r)
	if !ok {
		return
	}
	f := r.PostForm
	page := emailPage{Mode: "reset", Email: f.Get("email"), ClientSecret: f.Get("client_secret")}
	if f.Get("new") != f.Get("new2") {
		s.render(w, r, http.StatusBadRequest, "email", "reset_title", ws, "err_password_match", page)
		return
	}
	sid, err := s.email.SessionFor(r.Context(), page.ClientSecret, page.Email)
	if err == nil {
		_, err = s.accounts.ResetPasswordWithEmail(ctx(r), sid, page.ClientSecret, f.Get("new"))
	}
	if err != nil {
		s.emailError(w, r, ws, err, page)
		return
	}
	// The browser's own sign-in ends too.
	s.cookies.write(w, &webSession{SID: randomID(18), Exp: time.Now().Add(anonymousFor).Unix()})
	_, msgs := messagesFor(r)
	s.render(w, r, http.StatusOK, "email", "reset_title", nil, "", emailPage{Notice: msgs["reset_done"], Continue: pathLogin})
}

// handleEmailAddForm handles the account page's "add an address": it mails the link, whose
// confirmation leads to pathEmailConfirm.
func (s *Server) handleEmailAddForm(w http.ResponseWriter, r *http.Request) {
	ws, ok := s.checkForm(w, r)
	if !ok || !s.signedIn(w, r, ws) {
		return
	}
	addr := strings.TrimSpace(r.PostForm.Get("email"))
	secret := email.NewClientSecret()
	next := s.baseURL(r) + pathEmailConfirm + "?" + url.Values{"client_secret": {secret}, "email": {addr}}.Encode()
	_, err := s.email.RequestVerification(r.Context(), email.Request{Email: addr, ClientSecret: secret, SendAttempt: 1,
		NextLink: next, Purpose: email.PurposeAdd, IP: httputil.RemoteIP(r)})
	if err != nil {
		status, key := matrixErrorPage(err)
		s.renderAccount(w, r, ws, status, "", key)
		return
	}
	_, msgs := messagesFor(r)
	s.renderAccount(w, r, ws, http.StatusOK, msgs["email_add_sent"], "")
}

// handleEmailConfirmPage handles GET /_lattice/account/email/confirm, where a confirmed
// "add" link leads: the signed-in user confirms adding the address to the account.
func (s *Server) handleEmailConfirmPage(w http.ResponseWriter, r *http.Request) {
	ws := s.requireUser(w, r)
	if ws == nil {
		return
	}
	q := r.URL.Query()
	page := emailPage{Mode: "add", Email: q.Get("email"), ClientSecret: q.Get("client_secret")}
	if sid, err := s.email.SessionFor(r.Context(), page.ClientSecret, page.Email); err != nil {
		s.emailError(w, r, ws, err, page)
		return
	} else if _, err := s.email.Validated(r.Context(), email.PurposeAdd, sid, page.ClientSecret); err != nil {
		s.emailError(w, r, ws, err, emailPage{})
		return
	}
	s.render(w, r, http.StatusOK, "email", "email_add_title", ws, "", page)
}

// handleEmailConfirmForm binds the confirmed address to the signed-in account.
func (s *Server) handleEmailConfirmForm(w http.ResponseWriter, r *http.Request) {
	ws, ok := s.checkForm(w, r)
	if !ok || !s.signedIn(w, r, ws) {
		return
	}
	f := r.PostForm
	page := emailPage{Mode: "add", Email: f.Get("email"), ClientSecret: f.Get("client_secret")}
	sid, err := s.email.SessionFor(r.Context(), page.ClientSecret, page.Email)
	if err == nil {
		err = s.db.WithTx(ctx(r), func(tx *storage.Tx) error {
			addr, err := s.email.Take(ctx(r), tx, email.PurposeAdd, sid, page.ClientSecret)
			if err != nil {
				return err
			}
			if err := tx.AddThreePID(ctx(r), ws.UserID, "email", addr, time.Now().UnixMilli()); errors.Is(err, storage.ErrThreePIDInUse) {
				return &httputil.Error{Status: http.StatusBadRequest, Code: "M_THREEPID_IN_USE", Msg: "the email address is already in use"}
			} else if err != nil {
				return err
			}
			return nil
		})
	}
	if err != nil {
		s.emailError(w, r, ws, err, page)
		return
	}
	_, msgs := messagesFor(r)
	s.renderAccount(w, r, ws, http.StatusOK, msgs["email_added"], "")
}

// handleEmailDeleteForm removes an address from the signed-in account.
func (s *Server) handleEmailDeleteForm(w http.ResponseWriter, r *http.Request) {
	ws, ok := s.checkForm(w, r)
	if !ok || !s.signedIn(w, r, ws) {
		return
	}
	addr, err := storage.CanonicalThreePID("email", r.PostForm.Get("email"))
	if err != nil {
		s.renderAccount(w, r, ws, http.StatusBadRequest, "", "err_bad_request")
		return
	}
	err = s.db.WithTx(ctx(r), func(tx *storage.Tx) error { return tx.DeleteThreePID(ctx(r), ws.UserID, "email", addr) })
	if errors.Is(err, storage.ErrNotFound) {
		s.renderAccount(w, r, ws, http.StatusBadRequest, "", "err_bad_request")
		return
	} else if err != nil {
		s.log.Error("delete email", "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "err_server")
		return
	}
	_, msgs := messagesFor(r)
	s.renderAccount(w, r, ws, http.StatusOK, msgs["email_removed"], "")
}

// seal encrypts and authenticates plain (a password carried by a page's hidden field) with a
// key derived from the cookie secret.
func (c cookieSigner) seal(plain string) string {
	aead := c.aead()
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic(err) // crypto/rand does not fail
	}
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, []byte(plain), []byte("page-field")))
}

// unseal returns what seal sealed; false for anything else.
func (c cookieSigner) unseal(sealed string) (string, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	aead := c.aead()
	if err != nil || len(raw) < aead.NonceSize() {
		return "", false
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte("page-field"))
	return string(plain), err == nil
}

func (c cookieSigner) aead() cipher.AEAD {
	m := hmac.New(sha256.New, c.secret)
	m.Write([]byte("seal|page-field"))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}
