package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/email"
	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// SetEmail gives the client API the email verification service; nil (email not configured)
// leaves the email endpoints answering that the medium is not supported.
func (s *Server) SetEmail(e *email.Service) { s.email = e }

// emailRoutes are the endpoints of email addresses the server verifies itself
// (Client-Server API, "Adding Account Administrative Contact Information"). POST
// /account/password, which also resets a forgotten password, is in Register.
func (s *Server) emailRoutes() []route {
	const post = http.MethodPost
	return []route{
		{post, "/register/email/requestToken", false, false, s.handleRegisterEmailToken},
		{post, "/account/password/email/requestToken", false, false, s.handlePasswordEmailToken},
		{post, "/account/3pid/email/requestToken", true, false, s.handleThreePIDEmailToken},
		{post, "/account/3pid/add", true, false, s.handleThreePIDAdd},
		{post, "/account/3pid/delete", true, false, s.handleThreePIDDelete},
		{post, "/account/3pid/unbind", true, false, s.handleThreePIDUnbind},
	}
}

// loginTypeEmail is the user-interactive authentication stage of a verified address.
const loginTypeEmail = "m.login.email.identity"

// threePIDCreds are the threepid_creds of an m.login.email.identity stage.
type threePIDCreds struct {
	SID          string `json:"sid"`
	ClientSecret string `json:"client_secret"`
}

// handleRegisterEmailToken handles POST /register/email/requestToken.
func (s *Server) handleRegisterEmailToken(r *http.Request) (any, error) {
	if s.email != nil && s.cfg.Registration.Mode == config.RegistrationDisabled {
		return nil, spec.Forbidden("registration is disabled on this server")
	}
	return s.requestEmailToken(r, email.PurposeRegister)
}

// handlePasswordEmailToken handles POST /account/password/email/requestToken.
func (s *Server) handlePasswordEmailToken(r *http.Request) (any, error) {
	return s.requestEmailToken(r, email.PurposeReset)
}

// handleThreePIDEmailToken handles POST /account/3pid/email/requestToken.
func (s *Server) handleThreePIDEmailToken(r *http.Request) (any, error) {
	return s.requestEmailToken(r, email.PurposeAdd)
}

// requestEmailToken is the requestToken endpoints' shared body: the spec's
// RequestEmailValidation in, {sid, submit_url} out.
func (s *Server) requestEmailToken(r *http.Request, p email.Purpose) (any, error) {
	if s.email == nil {
		return nil, errEmailNotSupported
	}
	var req struct {
		ClientSecret string `json:"client_secret"`
		Email        string `json:"email"`
		SendAttempt  *int64 `json:"send_attempt"`
		NextLink     string `json:"next_link"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.ClientSecret == "" || req.Email == "" || req.SendAttempt == nil {
		return nil, spec.MissingParam("client_secret, email and send_attempt are required")
	}
	sid, err := s.email.RequestVerification(r.Context(), email.Request{Email: req.Email,
		ClientSecret: req.ClientSecret, SendAttempt: *req.SendAttempt, NextLink: req.NextLink,
		Purpose: p, IP: clientIP(r)})
	if err != nil {
		return nil, err
	}
	return map[string]string{"sid": sid, "submit_url": s.email.SubmitURL()}, nil
}

var (
	errEmailNotSupported = &httputil.Error{Status: http.StatusBadRequest, Code: "M_THREEPID_MEDIUM_NOT_SUPPORTED", Msg: "this server does not send email"}
	errThreePIDChanges   = spec.Forbidden("third-party identifiers are managed by the server's administrator")
)

// emailStage checks an m.login.email.identity stage and returns its credentials and the
// verified address; anything else is the 401 that lists flows.
func (s *Server) emailStage(ctx context.Context, p email.Purpose, auth json.RawMessage, flows [][]string) (threePIDCreds, string, error) {
	var a struct {
		Type          string         `json:"type"`
		ThreePIDCreds *threePIDCreds `json:"threepid_creds"`
		Legacy        *threePIDCreds `json:"threepidCreds"` // the r0 spelling, still sent by some clients
	}
	if len(auth) == 0 || string(auth) == "null" {
		return threePIDCreds{}, "", s.uiaRequired(flows, "")
	}
	if err := json.Unmarshal(auth, &a); err != nil {
		return threePIDCreds{}, "", spec.BadJSON("auth must be an object")
	}
	if a.ThreePIDCreds == nil {
		a.ThreePIDCreds = a.Legacy
	}
	if a.Type != loginTypeEmail || a.ThreePIDCreds == nil {
		return threePIDCreds{}, "", s.uiaRequired(flows, "")
	}
	addr, err := s.email.Validated(ctx, p, a.ThreePIDCreds.SID, a.ThreePIDCreds.ClientSecret)
	var herr *httputil.Error
	if errors.As(err, &herr) {
		// A failed stage: 401 with the flows, and the reason.
		uerr := s.uiaRequired(flows, herr.Msg).(*httputil.Error)
		uerr.Code = herr.Code
		return threePIDCreds{}, "", uerr
	} else if err != nil {
		return threePIDCreds{}, "", err
	}
	return *a.ThreePIDCreds, addr, nil
}

// registrationFlows are the flows /register offers in the registration mode: with email
// configured, the email stage comes first, and is the only way when
// email.registration_requires_email is on, an alternative flow otherwise (so that users can
// give an address at sign-up).
func (s *Server) registrationFlows() [][]string {
	base := []string{"m.login.dummy"}
	withEmail := []string{loginTypeEmail}
	if s.cfg.Registration.Mode == config.RegistrationToken {
		base = []string{"m.login.registration_token"}
		withEmail = []string{loginTypeEmail, "m.login.registration_token"}
	}
	switch {
	case s.email == nil:
		return [][]string{base}
	case s.email.RegistrationRequiresEmail():
		return [][]string{withEmail}
	}
	return [][]string{base, withEmail}
}

// emailRegistration reports whether a /register request goes through registerEmailAuth:
// email is required, or the client chose the email flow (in token mode, its token stage
// may also end the email flow).
func (s *Server) emailRegistration(auth json.RawMessage) bool {
	if s.email == nil || s.cfg.Registration.Mode == config.RegistrationDisabled {
		return false
	}
	t := authType(auth)
	return s.email.RegistrationRequiresEmail() || t == loginTypeEmail ||
		(t == "m.login.registration_token" && s.cfg.Registration.Mode == config.RegistrationToken)
}

// registerEmailAuth runs registration's user-interactive authentication of the email flow.
// In open mode the flow is the email stage alone; in token mode it is the email stage, then
// the registration token in a later request of the same session (the email session
// remembers the UIA session: storage, not memory, so any process can finish it). It returns
// the verified address's session (empty when the client took the flow without email) and,
// as registrationAuth does, a database registration token whose pending use the caller
// finishes.
func (s *Server) registerEmailAuth(ctx context.Context, auth json.RawMessage) (threePIDCreds, string, error) {
	flows := s.registrationFlows()
	if s.cfg.Registration.Mode != config.RegistrationToken {
		creds, _, err := s.registerEmailStage(ctx, auth, flows)
		return creds, "", err
	}
	var a authData
	_ = json.Unmarshal(auth, &a) // emailStage and registrationAuth report bad auth
	switch a.Type {
	case loginTypeEmail:
		creds, _, err := s.registerEmailStage(ctx, auth, flows)
		if err != nil {
			return creds, "", err
		}
		if a.Session == "" {
			a.Session = s.uia.issue()
		}
		if err := s.email.Remember(ctx, email.PurposeRegister, creds.SID, creds.ClientSecret, a.Session); err != nil {
			return creds, "", err
		}
		return creds, "", s.uiaProgress(flows, a.Session, []string{loginTypeEmail}, nil)
	case "m.login.registration_token":
		sid, secret, err := s.email.Remembered(ctx, a.Session)
		if err != nil && !s.email.RegistrationRequiresEmail() {
			// The flow without email.
			dbToken, err := s.registrationAuth(ctx, auth)
			return threePIDCreds{}, dbToken, err
		} else if err != nil {
			return threePIDCreds{}, "", s.uiaRequired(flows, "verify your email address first")
		}
		creds := threePIDCreds{SID: sid, ClientSecret: secret}
		if err := s.checkUnbound(ctx, creds); err != nil {
			return creds, "", err
		}
		dbToken, err := s.registrationAuth(ctx, auth)
		var herr *httputil.Error
		if errors.As(err, &herr) && herr.Status == http.StatusUnauthorized {
			// A wrong token: the same session goes on, the email stage still counts.
			err = s.uiaProgress(flows, a.Session, []string{loginTypeEmail}, herr)
		}
		return creds, dbToken, err
	}
	return threePIDCreds{}, "", s.uiaRequired(flows, "")
}

// uiaProgress is the 401 of a session that completed some stages; failed, when not nil,
// gives the errcode and error of a failed stage.
func (s *Server) uiaProgress(flows [][]string, session string, completed []string, failed *httputil.Error) error {
	e := s.uiaRequired(flows, "").(*httputil.Error)
	e.Extra["session"], e.Extra["completed"] = session, completed
	if failed != nil {
		e.Code, e.Msg = failed.Code, failed.Msg
	}
	return e
}

// registerEmailStage runs the m.login.email.identity stage of registration: the verified
// address must still be unbound.
func (s *Server) registerEmailStage(ctx context.Context, auth json.RawMessage, flows [][]string) (threePIDCreds, string, error) {
	creds, addr, err := s.emailStage(ctx, email.PurposeRegister, auth, flows)
	if err != nil {
		return creds, "", err
	}
	return creds, addr, s.checkAddressUnbound(ctx, addr)
}

// checkUnbound checks that the address of a validated session is bound to no account.
func (s *Server) checkUnbound(ctx context.Context, creds threePIDCreds) error {
	addr, err := s.email.Validated(ctx, email.PurposeRegister, creds.SID, creds.ClientSecret)
	if err != nil {
		return err
	}
	return s.checkAddressUnbound(ctx, addr)
}

func (s *Server) checkAddressUnbound(ctx context.Context, addr string) error {
	if _, err := s.db.UserByThreePID(ctx, "email", addr); err == nil {
		return threePIDInUse()
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return nil
}

// bindRegistrationEmail binds the address verified at registration to the new account, in
// the transaction tx that creates it, using up its validation session.
func (s *Server) bindRegistrationEmail(ctx context.Context, tx *storage.Tx, userID string, creds threePIDCreds) error {
	addr, err := s.email.Take(ctx, tx, email.PurposeRegister, creds.SID, creds.ClientSecret)
	if errors.Is(err, email.ErrNotValidated) {
		return &httputil.Error{Status: http.StatusBadRequest, Code: "M_THREEPID_AUTH_FAILED", Msg: email.ErrNotValidated.Msg}
	} else if err != nil {
		return err
	}
	return threePIDErr(tx.AddThreePID(ctx, userID, "email", addr, time.Now().UnixMilli()))
}

// resetPassword handles POST /account/password without an access token: a forgotten
// password, proved with the m.login.email.identity stage for an address bound to the account.
// logout_devices (default true) logs out every device of the account.
func (s *Server) resetPassword(r *http.Request, newPassword string, logoutDevices bool, auth json.RawMessage) (any, error) {
	if s.email == nil {
		return nil, spec.MissingToken("missing access token")
	}
	creds, _, err := s.emailStage(r.Context(), email.PurposeReset, auth, [][]string{{loginTypeEmail}})
	if err != nil {
		return nil, err
	}
	if newPassword == "" {
		return nil, spec.MissingParam("new_password is required")
	}
	if _, err := s.resetWithEmail(r.Context(), creds, newPassword, logoutDevices); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// resetWithEmail sets the password of the account bound to the address of the validated
// reset session creds, using the session up, and logs out every device if logoutDevices.
func (s *Server) resetWithEmail(ctx context.Context, creds threePIDCreds, newPassword string, logoutDevices bool) (string, error) {
	hash, err := hashPassword(s.cfg, newPassword)
	if err != nil {
		return "", err
	}
	var userID string
	var pos int64
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		addr, err := s.email.Take(ctx, tx, email.PurposeReset, creds.SID, creds.ClientSecret)
		if err != nil {
			return err
		}
		if userID, err = tx.UserByThreePID(ctx, "email", addr); errors.Is(err, storage.ErrNotFound) {
			return &httputil.Error{Status: http.StatusBadRequest, Code: "M_THREEPID_NOT_FOUND", Msg: "no account has this email address"}
		} else if err != nil {
			return err
		}
		if acc, err := tx.Account(ctx, userID); err != nil {
			return err
		} else if acc.Deactivated {
			return spec.Forbidden("the account is deactivated")
		}
		if err := tx.SetPassword(ctx, userID, hash); err != nil {
			return err
		}
		if logoutDevices {
			pos, err = removeDevices(ctx, tx, userID)
		}
		return err
	})
	if err != nil {
		return "", err
	}
	s.deviceListChanged(ctx, userID, pos)
	return userID, nil
}

// maybeAuthed serves fn with the access token's device when the request has a token, and
// without a device when it has none (POST /account/password: a signed-out password reset).
func (s *Server) maybeAuthed(fn httputil.HandlerFunc) http.Handler {
	authed, anon := s.authed(fn), s.handle(fn)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if httputil.Device(r.Context()) == nil && httputil.AccessToken(r) == "" {
			anon.ServeHTTP(w, r)
			return
		}
		authed.ServeHTTP(w, r)
	})
}

// handleThreePIDAdd handles POST /account/3pid/add: the address of a validated session is
// bound to the account, after the password stage.
func (s *Server) handleThreePIDAdd(r *http.Request) (any, error) {
	if s.email == nil {
		return nil, errThreePIDChanges
	}
	dev := httputil.Device(r.Context())
	var req struct {
		Auth         json.RawMessage `json:"auth"`
		ClientSecret string          `json:"client_secret"`
		SID          string          `json:"sid"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := s.requirePassword(uiaContext(r), dev.UserID, req.Auth); err != nil {
		return nil, err
	}
	if req.ClientSecret == "" || req.SID == "" {
		return nil, spec.MissingParam("client_secret and sid are required")
	}
	err := s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		addr, err := s.email.Take(r.Context(), tx, email.PurposeAdd, req.SID, req.ClientSecret)
		if errors.Is(err, email.ErrNotValidated) {
			return &httputil.Error{Status: http.StatusBadRequest, Code: "M_THREEPID_AUTH_FAILED", Msg: email.ErrNotValidated.Msg}
		} else if err != nil {
			return err
		}
		return threePIDErr(tx.AddThreePID(r.Context(), dev.UserID, "email", addr, time.Now().UnixMilli()))
	})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// handleThreePIDDelete handles POST /account/3pid/delete: the address is removed from the
// account (no identity server knows it: id_server_unbind_result is no-support).
func (s *Server) handleThreePIDDelete(r *http.Request) (any, error) {
	if s.email == nil {
		return nil, errThreePIDChanges
	}
	medium, addr, err := threePIDBody(r)
	if err != nil {
		return nil, err
	}
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		return tx.DeleteThreePID(r.Context(), httputil.Device(r.Context()).UserID, medium, addr)
	})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, &httputil.Error{Status: http.StatusBadRequest, Code: "M_THREEPID_NOT_FOUND", Msg: "the account has no such third-party identifier"}
	} else if err != nil {
		return nil, err
	}
	return map[string]string{"id_server_unbind_result": "no-support"}, nil
}

// handleThreePIDUnbind handles POST /account/3pid/unbind: this server binds nothing at
// identity servers, so there is nothing to unbind.
func (s *Server) handleThreePIDUnbind(r *http.Request) (any, error) {
	if _, _, err := threePIDBody(r); err != nil {
		return nil, err
	}
	return map[string]string{"id_server_unbind_result": "no-support"}, nil
}

// threePIDBody decodes {medium, address} and returns them canonical.
func threePIDBody(r *http.Request) (string, string, error) {
	var req struct {
		Medium  string `json:"medium"`
		Address string `json:"address"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return "", "", err
	}
	if req.Medium == "" || req.Address == "" {
		return "", "", spec.MissingParam("medium and address are required")
	}
	addr, err := storage.CanonicalThreePID(req.Medium, req.Address)
	if err != nil {
		return "", "", spec.InvalidParam(err.Error())
	}
	return req.Medium, addr, nil
}

func threePIDInUse() error {
	return &httputil.Error{Status: http.StatusBadRequest, Code: "M_THREEPID_IN_USE", Msg: "the email address is already in use"}
}

// threePIDErr maps storage's ErrThreePIDInUse to the client's error.
func threePIDErr(err error) error {
	if errors.Is(err, storage.ErrThreePIDInUse) {
		return threePIDInUse()
	}
	return err
}
