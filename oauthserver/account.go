package oauthserver

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// The sign-in, registration and account pages.

type loginPage struct {
	Next, Username string
	CanRegister    bool
	CanReset       bool // a forgotten password can be reset by email
}

// handleLoginPage handles GET /_lattice/account/login.
func (s *Server) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	ws := s.session(w, r)
	next := safeNext(r.URL.Query().Get("next"))
	if ws.UserID != "" {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, "login", "login_title", ws, "", loginPage{Next: next, CanRegister: s.cfg.Registration.Mode != config.RegistrationDisabled,
		CanReset: s.email != nil})
}

// handleLoginForm handles the sign-in form: the password is checked under the per-address
// limit of these pages and the per-account failed-login limit of /login.
func (s *Server) handleLoginForm(w http.ResponseWriter, r *http.Request) {
	ws, ok := s.checkForm(w, r)
	if !ok {
		return
	}
	f := r.PostForm
	page := loginPage{Next: safeNext(f.Get("next")), Username: f.Get("username"), CanRegister: s.cfg.Registration.Mode != config.RegistrationDisabled,
		CanReset: s.email != nil}
	if ok, _ := s.signIns.Allow(httputil.RemoteIP(r)); !ok {
		s.render(w, r, http.StatusTooManyRequests, "login", "login_title", ws, "err_rate_limited", page)
		return
	}
	userID, err := s.accounts.SignIn(r.Context(), f.Get("username"), f.Get("password"))
	if err != nil {
		status, key := matrixErrorPage(err)
		if key == "" {
			key = "err_credentials"
		}
		s.render(w, r, status, "login", "login_title", ws, key, page)
		return
	}
	s.SignInUser(w, r, userID, page.Next)
}

// matrixErrorPage maps a Matrix error of clientapi onto a page status and message.
func matrixErrorPage(err error) (int, string) {
	var me spec.MatrixError
	if errors.As(err, &me) {
		switch me.ErrCode {
		case spec.ErrorLimitExceeded:
			return http.StatusTooManyRequests, "err_rate_limited"
		case spec.ErrorForbidden:
			return http.StatusForbidden, ""
		default:
			return http.StatusBadRequest, me.Err
		}
	}
	var he *httputil.Error
	if errors.As(err, &he) {
		if he.Code == "M_USER_LOCKED" {
			return http.StatusForbidden, "err_locked"
		}
		return http.StatusBadRequest, he.Msg
	}
	return http.StatusInternalServerError, "err_server"
}

type registerPage struct {
	Next, Username, Token, Email   string
	NeedToken, NeedEmail, Disabled bool
}

func (s *Server) registerPage(next string) registerPage {
	return registerPage{Next: safeNext(next), NeedToken: s.cfg.Registration.Mode == config.RegistrationToken,
		NeedEmail: s.email.RegistrationRequiresEmail(), Disabled: s.cfg.Registration.Mode == config.RegistrationDisabled}
}

// handleSignUpPage handles GET /_lattice/account/register.
func (s *Server) handleSignUpPage(w http.ResponseWriter, r *http.Request) {
	ws := s.session(w, r)
	p := s.registerPage(r.URL.Query().Get("next"))
	p.Token = r.URL.Query().Get("token")
	status := http.StatusOK
	if p.Disabled {
		status = http.StatusForbidden
	}
	s.render(w, r, status, "register", "register_title", ws, "", p)
}

// handleSignUpForm handles the registration form, under the registration mode.
func (s *Server) handleSignUpForm(w http.ResponseWriter, r *http.Request) {
	ws, ok := s.checkForm(w, r)
	if !ok {
		return
	}
	f := r.PostForm
	p := s.registerPage(f.Get("next"))
	p.Username, p.Token = f.Get("username"), f.Get("token")
	if p.Disabled {
		s.render(w, r, http.StatusForbidden, "register", "register_title", ws, "err_reg_disabled", p)
		return
	}
	if f.Get("password") != f.Get("password2") {
		s.render(w, r, http.StatusBadRequest, "register", "register_title", ws, "err_password_match", p)
		return
	}
	if p.NeedEmail {
		s.signUpWithEmail(w, r, ws, p)
		return
	}
	token := ""
	if p.NeedToken {
		token = f.Get("token")
	}
	userID, err := s.accounts.RegisterAccount(r.Context(), httputil.RemoteIP(r), f.Get("username"), f.Get("password"), token)
	if err != nil {
		status, key := matrixErrorPage(err)
		if key == "" {
			key = "invalid registration token"
		}
		s.render(w, r, status, "register", "register_title", ws, key, p)
		return
	}
	s.SignInUser(w, r, userID, p.Next)
}

// handleLogoutForm handles the sign-out form: the browser session ends (the client
// sessions it approved do not).
func (s *Server) handleLogoutForm(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.checkForm(w, r); !ok {
		return
	}
	s.cookies.write(w, &webSession{SID: randomID(18), Exp: time.Now().Add(anonymousFor).Unix()})
	http.Redirect(w, r, pathLogin+"?next="+url.QueryEscape(safeNext(r.PostForm.Get("next"))), http.StatusSeeOther)
}

type deviceRow struct {
	DeviceID, DisplayName, LastSeen string
}

type accountPage struct {
	Email        bool     // email is configured: the addresses section is shown
	Emails       []string // the account's addresses
	Devices      []deviceRow
	Selected     string
	DisplayName  string
	Notice       string
	CrossSigning bool
}

// handleAccountPage handles GET /_lattice/account/ (account_management_uri), with the
// spec's action and device_id parameters selecting what to show.
func (s *Server) handleAccountPage(w http.ResponseWriter, r *http.Request) {
	ws := s.requireUser(w, r)
	if ws == nil {
		return
	}
	s.renderAccount(w, r, ws, http.StatusOK, "", "")
}

func (s *Server) renderAccount(w http.ResponseWriter, r *http.Request, ws *webSession, status int, notice, errKey string) {
	devs, err := s.db.Devices(r.Context(), ws.UserID)
	if err != nil {
		s.log.Error("account page", "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "err_server")
		return
	}
	p := accountPage{Selected: r.URL.Query().Get("device_id"), Notice: notice}
	switch r.URL.Query().Get("action") {
	case "org.matrix.cross_signing_reset":
		p.CrossSigning = s.crossSigningEnabled()
	}
	for _, d := range devs {
		row := deviceRow{DeviceID: d.DeviceID, DisplayName: d.DisplayName}
		if d.LastSeenTS > 0 {
			row.LastSeen = time.UnixMilli(d.LastSeenTS).UTC().Format("2006-01-02 15:04 UTC")
		}
		p.Devices = append(p.Devices, row)
	}
	if prof, err := s.db.Profile(r.Context(), ws.UserID); err == nil {
		p.DisplayName = prof.DisplayName
	}
	if s.email != nil {
		p.Email = true
		tps, err := s.db.ThreePIDs(r.Context(), ws.UserID)
		if err != nil {
			s.log.Error("account page", "err", err)
			s.errorPage(w, r, http.StatusInternalServerError, "err_server")
			return
		}
		for _, tp := range tps {
			if tp.Medium == "email" {
				p.Emails = append(p.Emails, tp.Address)
			}
		}
	}
	s.render(w, r, status, "account", "account_title", ws, errKey, p)
}

// handleEndSessionForm handles the account page's sign-out of one session: its device goes
// as with DELETE /devices/{deviceId}.
func (s *Server) handleEndSessionForm(w http.ResponseWriter, r *http.Request) {
	ws, ok := s.checkForm(w, r)
	if !ok || !s.signedIn(w, r, ws) {
		return
	}
	if err := s.accounts.EndSession(ctx(r), ws.UserID, r.PostForm.Get("device_id")); err != nil {
		s.log.Error("end session", "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "err_server")
		return
	}
	_, msgs := messagesFor(r)
	s.renderAccount(w, r, ws, http.StatusOK, msgs["session_ended"], "")
}

// handlePasswordForm handles the password change form.
func (s *Server) handlePasswordForm(w http.ResponseWriter, r *http.Request) {
	ws, ok := s.checkForm(w, r)
	if !ok || !s.signedIn(w, r, ws) {
		return
	}
	if err := s.accounts.ChangePassword(ctx(r), ws.UserID, r.PostForm.Get("current"), r.PostForm.Get("new")); err != nil {
		status, key := matrixErrorPage(err)
		if key == "" {
			key = "err_credentials"
		}
		s.renderAccount(w, r, ws, status, "", key)
		return
	}
	s.keepSignedIn(w, ws)
	_, msgs := messagesFor(r)
	s.renderAccount(w, r, ws, http.StatusOK, msgs["password_changed"], "")
}

// handleProfileForm handles the display name form.
func (s *Server) handleProfileForm(w http.ResponseWriter, r *http.Request) {
	ws, ok := s.checkForm(w, r)
	if !ok || !s.signedIn(w, r, ws) {
		return
	}
	if err := s.accounts.SetDisplayName(ctx(r), ws.UserID, r.PostForm.Get("displayname")); err != nil {
		status, key := matrixErrorPage(err)
		s.renderAccount(w, r, ws, status, "", key)
		return
	}
	_, msgs := messagesFor(r)
	s.renderAccount(w, r, ws, http.StatusOK, msgs["saved"], "")
}

// signedIn refuses a form of the account page from a browser that is not signed in.
func (s *Server) signedIn(w http.ResponseWriter, r *http.Request, ws *webSession) bool {
	if ws.UserID == "" {
		s.errorPage(w, r, http.StatusForbidden, "err_csrf")
		return false
	}
	return true
}

// crossSigningEnabled: the account page offers the cross-signing reset approval.
func (s *Server) crossSigningEnabled() bool { return true }

// crossSigningResetWindow is how long an approval of the cross-signing reset lasts.
const crossSigningResetWindow = 10 * time.Minute

// handleCrossSigningForm handles the approval of a cross-signing reset: for the next 10
// minutes, one upload of new cross-signing keys by a session of the OAuth 2.0 API passes the
// m.oauth stage (clientapi/oauthuia.go).
func (s *Server) handleCrossSigningForm(w http.ResponseWriter, r *http.Request) {
	ws, ok := s.checkForm(w, r)
	if !ok || !s.signedIn(w, r, ws) {
		return
	}
	until := time.Now().Add(crossSigningResetWindow).UnixMilli()
	if err := s.db.WithTx(ctx(r), func(tx *storage.Tx) error { return tx.AllowCrossSigningReset(ctx(r), ws.UserID, until) }); err != nil {
		s.log.Error("allow cross-signing reset", "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "err_server")
		return
	}
	_, msgs := messagesFor(r)
	s.renderAccount(w, r, ws, http.StatusOK, msgs["cross_signing_ok"], "")
}
