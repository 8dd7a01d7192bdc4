package clientapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

var validLocalpart = regexp.MustCompile(`^[a-z0-9._=\-/+]+$`)

type registerRequest struct {
	Type                     string          `json:"type"`
	Username                 string          `json:"username"`
	Password                 string          `json:"password"`
	DeviceID                 string          `json:"device_id"`
	InitialDeviceDisplayName string          `json:"initial_device_display_name"`
	InhibitLogin             bool            `json:"inhibit_login"`
	RefreshToken             bool            `json:"refresh_token"`
	Auth                     json.RawMessage `json:"auth"`
}

// handleRegister handles POST /register with the flows the registration mode allows.
func (s *Server) handleRegister(r *http.Request) (any, error) {
	if kind := r.URL.Query().Get("kind"); kind == "guest" {
		return nil, spec.GuestAccessForbidden("guest access is not enabled")
	} else if kind != "" && kind != "user" {
		return nil, spec.InvalidParam("kind must be user or guest")
	}
	var req registerRequest
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Type == loginTypeAppService || authType(req.Auth) == loginTypeAppService {
		return s.registerAppService(r, req)
	}
	if ok, wait := s.registrations.Allow(clientIP(r)); !ok {
		return nil, spec.LimitExceeded("too many registrations from this address", wait.Milliseconds())
	}
	var dbToken string
	var emailCreds *threePIDCreds
	var err error
	if s.emailRegistration(req.Auth) {
		var creds threePIDCreds
		if creds, dbToken, err = s.registerEmailAuth(r.Context(), req.Auth); err != nil {
			return nil, err
		}
		if creds.SID != "" {
			emailCreds = &creds
		}
	} else if dbToken, err = s.registrationAuth(r.Context(), req.Auth); err != nil {
		return nil, err
	}
	if req.Username == "" {
		req.Username = strings.ToLower(config.RandomSecret(9))
		req.Username = strings.NewReplacer("-", "a", "_", "b").Replace(req.Username)
	}
	// The server "MUST either map the provided username onto a user_id in a logical manner, or
	// reject" it: upper-case letters are mapped, as the reference server does.
	req.Username = lowerASCII(req.Username)
	var resp map[string]any
	err = s.checkExclusiveUser(r.Context(), s.qualify(req.Username))
	if err == nil {
		var bind func(tx *storage.Tx, userID string) error
		if emailCreds != nil {
			// The verified address's session is used up, and the address bound, in the
			// transaction that creates the account: one session makes one account, and no
			// account is left without the address it was verified with.
			bind = func(tx *storage.Tx, userID string) error {
				return s.bindRegistrationEmail(r.Context(), tx, userID, *emailCreds)
			}
		}
		resp, err = s.createAccount(r.Context(), req, clientIP(r), false, bind)
	}
	if dbToken != "" {
		// The token's pending use becomes completed once the account exists, or is given
		// back if it does not.
		err = errors.Join(err, s.finishRegistrationToken(r.Context(), dbToken, resp != nil))
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// registrationAuth runs the registration flow of the registration mode. When the
// m.login.registration_token stage passed with a token of the database (one made with the
// admin API), it returns that token, whose pending use the caller must finish.
func (s *Server) registrationAuth(ctx context.Context, auth json.RawMessage) (string, error) {
	dbToken, err := s.registrationStage(auth)
	if err != nil || dbToken == "" {
		return "", err
	}
	return s.reserveRegistrationToken(ctx, dbToken)
}

// registrationStage checks the stage of the registration mode; a registration token that is
// not one of the config's is returned for the database to decide.
func (s *Server) registrationStage(auth json.RawMessage) (dbToken string, err error) {
	flows := s.registrationFlows()
	if s.cfg.Registration.Mode == config.RegistrationDisabled {
		return "", spec.Forbidden("registration is disabled on this server")
	}
	if len(auth) == 0 || string(auth) == "null" {
		return "", s.uiaRequired(flows, "")
	}
	var a authData
	if err := json.Unmarshal(auth, &a); err != nil {
		return "", spec.BadJSON("auth must be an object")
	}
	switch {
	case s.cfg.Registration.Mode == config.RegistrationOpen && a.Type == "m.login.dummy":
		return "", nil
	case s.cfg.Registration.Mode == config.RegistrationToken && a.Type == "m.login.registration_token":
		if a.Token == "" {
			return "", s.uiaRequired(flows, "invalid registration token")
		}
		for _, t := range s.cfg.Registration.Tokens {
			if hmac.Equal([]byte(t), []byte(a.Token)) {
				return "", nil
			}
		}
		return a.Token, nil
	}
	return "", s.uiaRequired(flows, "")
}

// CreateAccount validates the user name and password and creates the account; it is what
// registration and `lattice create-account` share.
func CreateAccount(ctx context.Context, db *storage.DB, cfg *config.Config, localpart, password string, admin bool) (string, error) {
	return createAccountWith(ctx, db, cfg, localpart, password, admin, nil)
}

// createAccountWith is CreateAccount that also runs inTx, when not nil, in the transaction
// that inserts the account: the account exists only if inTx succeeded.
func createAccountWith(ctx context.Context, db *storage.DB, cfg *config.Config, localpart, password string, admin bool,
	inTx func(tx *storage.Tx, userID string) error) (string, error) {
	if !validLocalpart.MatchString(localpart) {
		return "", spec.InvalidUsername("user names may contain only a-z, 0-9, . _ = - / +")
	}
	userID := "@" + localpart + ":" + cfg.ServerName
	if len(userID) > 255 {
		return "", spec.InvalidUsername("user ID is too long")
	}
	hash, err := hashPassword(cfg, password)
	if err != nil {
		return "", err
	}
	err = db.WithTx(ctx, func(tx *storage.Tx) error {
		err := tx.InsertAccount(ctx, storage.Account{UserID: userID, PasswordHash: hash, IsAdmin: admin, CreatedTS: time.Now().UnixMilli()})
		if err == nil && inTx != nil {
			err = inTx(tx, userID)
		}
		return err
	})
	if errors.Is(err, storage.ErrConflict) {
		return "", spec.UserInUse("user ID already taken")
	} else if err != nil {
		return "", err
	}
	return userID, nil
}

// ResetPassword sets a new password for a local account and logs all its devices out (their
// keys go with them), for `lattice reset-password`.
func ResetPassword(ctx context.Context, db *storage.DB, cfg *config.Config, userID, password string) error {
	acc, err := db.Account(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return spec.NotFound("no such account")
	} else if err != nil {
		return err
	}
	if acc.Deactivated {
		return spec.Forbidden("the account is deactivated")
	}
	hash, err := hashPassword(cfg, password)
	if err != nil {
		return err
	}
	return db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.SetPassword(ctx, userID, hash); err != nil {
			return err
		}
		_, err := removeDevices(ctx, tx, userID)
		return err
	})
}

// createAccount creates the account (running inTx in its transaction, see
// createAccountWith), and unless inhibited, its first device. The response is not nil once
// the account exists, even when making the device failed.
func (s *Server) createAccount(ctx context.Context, req registerRequest, ip string, admin bool,
	inTx func(tx *storage.Tx, userID string) error) (map[string]any, error) {
	userID, err := createAccountWith(ctx, s.db, s.cfg, req.Username, req.Password, admin, inTx)
	if err != nil {
		return nil, err
	}
	resp := map[string]any{"user_id": userID}
	if req.InhibitLogin {
		return resp, nil
	}
	sess, err := s.newSession(ctx, userID, req.DeviceID, req.InitialDeviceDisplayName, ip, "", req.RefreshToken)
	if err != nil {
		return resp, err
	}
	resp["device_id"], resp["access_token"] = sess.DeviceID, sess.AccessToken
	sess.addRefresh(resp)
	return resp, nil
}

// handleRegisterAvailable handles GET /register/available.
func (s *Server) handleRegisterAvailable(r *http.Request) (any, error) {
	username := lowerASCII(r.URL.Query().Get("username")) // as handleRegister maps it
	if username == "" {
		return nil, spec.MissingParam("username is required")
	}
	if !validLocalpart.MatchString(username) {
		return nil, spec.InvalidUsername("invalid user name")
	}
	if err := s.checkExclusiveUser(r.Context(), s.qualify(username)); err != nil {
		return nil, err
	}
	if _, err := s.db.Account(r.Context(), s.qualify(username)); err == nil {
		return nil, spec.UserInUse("user ID already taken")
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	return map[string]bool{"available": true}, nil
}

// handleLoginFlows handles GET /login (logintoken.go lists the flows).
func (s *Server) handleLoginFlows(r *http.Request) (any, error) {
	return map[string]any{"flows": s.loginFlows()}, nil
}

type loginRequest struct {
	Type                     string          `json:"type"`
	Identifier               *userIdentifier `json:"identifier"`
	User                     string          `json:"user"`
	Password                 string          `json:"password"`
	Token                    string          `json:"token"` // m.login.token
	DeviceID                 string          `json:"device_id"`
	InitialDeviceDisplayName string          `json:"initial_device_display_name"`
	RefreshToken             bool            `json:"refresh_token"`
}

// handleLogin handles POST /login with m.login.password and an m.id.user identifier, or an
// m.id.thirdparty one naming a third-party ID an admin bound to the account; or with an
// m.login.token login token (logintoken.go).
func (s *Server) handleLogin(r *http.Request) (any, error) {
	var req loginRequest
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Type == "m.login.token" {
		userID, err := s.loginTokenUser(r.Context(), req.Token)
		if err != nil {
			return nil, err
		}
		return s.completeLogin(r, req, userID)
	}
	if req.Type != "m.login.password" && req.Type != loginTypeAppService {
		return nil, &httputil.Error{Status: http.StatusBadRequest, Code: "M_UNKNOWN", Msg: "unsupported login type"}
	}
	user := req.User
	if req.Identifier != nil {
		switch req.Identifier.Type {
		case "m.id.user":
			user = req.Identifier.User
		case "m.id.thirdparty":
			var err error
			if user, err = s.threePIDUser(r.Context(), req.Identifier.Medium, req.Identifier.Address); err != nil {
				return nil, err
			}
		default:
			return nil, &httputil.Error{Status: http.StatusBadRequest, Code: "M_UNKNOWN", Msg: "unsupported identifier type"}
		}
	}
	if user == "" {
		return nil, spec.BadJSON("identifier.user is required")
	}
	userID := s.qualify(user)
	if !strings.HasSuffix(userID, ":"+s.cfg.ServerName) {
		return nil, spec.Forbidden("invalid user name or password")
	}
	if req.Type == loginTypeAppService {
		if err := s.loginAppService(r, userID); err != nil {
			return nil, err
		}
	} else if err := s.checkPasswordLimited(r.Context(), userID, req.Password); errors.Is(err, errWrongPassword) {
		return nil, spec.Forbidden("invalid user name or password")
	} else if err != nil {
		return nil, err
	}
	return s.completeLogin(r, req, userID)
}

// completeLogin gives the user, whose credentials were checked, a new device.
func (s *Server) completeLogin(r *http.Request, req loginRequest, userID string) (any, error) {
	if err := s.notLocked(r.Context(), userID); err != nil {
		return nil, err
	}
	sess, err := s.newSession(r.Context(), userID, req.DeviceID, req.InitialDeviceDisplayName, clientIP(r), "", req.RefreshToken)
	if err != nil {
		return nil, err
	}
	resp := map[string]any{
		"user_id": userID, "device_id": sess.DeviceID, "access_token": sess.AccessToken,
		"home_server": s.cfg.ServerName,
	}
	sess.addRefresh(resp)
	// Clients reconfigure themselves from well_known, so it is sent only when the operator
	// said where clients reach the server: a guess would move them off a working URL.
	if base := s.cfg.ClientAPI.PublicBaseURL; base != "" {
		resp["well_known"] = map[string]any{"m.homeserver": map[string]string{"base_url": base}}
	}
	return resp, nil
}

// handleLogout handles POST /logout: the device and its token are removed.
func (s *Server) handleLogout(r *http.Request) (any, error) {
	dev := httputil.Device(r.Context())
	return s.logout(r, dev.UserID, dev.DeviceID)
}

// logout removes the named devices of userID, all of them when none is named.
func (s *Server) logout(r *http.Request, userID string, deviceIDs ...string) (any, error) {
	var pos int64
	err := s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		var err error
		pos, err = removeDevices(r.Context(), tx, userID, deviceIDs...)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.deviceListChanged(r.Context(), userID, pos, deviceIDs...)
	return struct{}{}, nil
}

// handleLogoutAll handles POST /logout/all: the account's browser sessions end too.
func (s *Server) handleLogoutAll(r *http.Request) (any, error) {
	userID := httputil.Device(r.Context()).UserID
	err := s.db.WithTx(r.Context(), func(tx *storage.Tx) error { return tx.EndWebSessions(r.Context(), userID, time.Now().UnixMilli()) })
	if err != nil {
		return nil, err
	}
	return s.logout(r, userID)
}

// handleWhoami handles GET /account/whoami.
func (s *Server) handleWhoami(r *http.Request) (any, error) {
	dev := httputil.Device(r.Context())
	resp := map[string]any{"user_id": dev.UserID, "is_guest": false}
	if dev.DeviceID != "" {
		// An application service acting without device_id has no device.
		resp["device_id"] = dev.DeviceID
	}
	return resp, nil
}

// handlePassword handles POST /account/password: UIA with the current password, or without
// an access token, a reset with a verified email address (resetPassword).
func (s *Server) handlePassword(r *http.Request) (any, error) {
	dev := httputil.Device(r.Context())
	var req struct {
		NewPassword   string          `json:"new_password"`
		LogoutDevices *bool           `json:"logout_devices"`
		Auth          json.RawMessage `json:"auth"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if dev == nil {
		return s.resetPassword(r, req.NewPassword, req.LogoutDevices == nil || *req.LogoutDevices, req.Auth)
	}
	if err := s.requirePassword(uiaContext(r), dev.UserID, req.Auth); err != nil {
		return nil, err
	}
	if req.NewPassword == "" {
		return nil, spec.MissingParam("new_password is required")
	}
	hash, err := hashPassword(s.cfg, req.NewPassword)
	if err != nil {
		return nil, err
	}
	var pos int64
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		if err := tx.SetPassword(r.Context(), dev.UserID, hash); err != nil {
			return err
		}
		if req.LogoutDevices == nil || *req.LogoutDevices {
			devs, err := tx.Devices(r.Context(), dev.UserID)
			if err != nil {
				return err
			}
			var others []string
			for _, d := range devs {
				if d.DeviceID != dev.DeviceID {
					others = append(others, d.DeviceID)
				}
			}
			if len(others) > 0 {
				pos, err = removeDevices(r.Context(), tx, dev.UserID, others...)
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.deviceListChanged(r.Context(), dev.UserID, pos)
	return struct{}{}, nil
}

// handleDeactivate handles POST /account/deactivate: the user leaves every room, loses every
// device and can no longer log in.
func (s *Server) handleDeactivate(r *http.Request) (any, error) {
	dev := httputil.Device(r.Context())
	var req struct {
		Auth json.RawMessage `json:"auth"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := s.requirePassword(uiaContext(r), dev.UserID, req.Auth); err != nil {
		return nil, err
	}
	pos, err := s.rooms.DeactivateAccount(r.Context(), dev.UserID, false)
	if err != nil {
		return nil, err
	}
	s.deviceListChanged(r.Context(), dev.UserID, pos)
	return map[string]string{"id_server_unbind_result": "no-support"}, nil
}

// handleSharedSecretNonce handles GET /_synapse/admin/v1/register.
func (s *Server) handleSharedSecretNonce(r *http.Request) (any, error) {
	if s.cfg.Registration.SharedSecret == "" {
		return nil, spec.Forbidden("shared-secret registration is disabled")
	}
	if ok, wait := s.nonceRequests.Allow(clientIP(r)); !ok {
		return nil, spec.LimitExceeded("too many nonce requests from this address", wait.Milliseconds())
	}
	return map[string]string{"nonce": s.nonces.issue()}, nil
}

// handleSharedSecretRegister handles POST /_synapse/admin/v1/register: the mac is
// HMAC-SHA1(secret, nonce NUL username NUL password NUL "admin"|"notadmin"), hex-encoded.
func (s *Server) handleSharedSecretRegister(r *http.Request) (any, error) {
	if s.cfg.Registration.SharedSecret == "" {
		return nil, spec.Forbidden("shared-secret registration is disabled")
	}
	var req struct {
		Nonce    string `json:"nonce"`
		Username string `json:"username"`
		Password string `json:"password"`
		Admin    bool   `json:"admin"`
		MAC      string `json:"mac"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if !s.nonces.take(req.Nonce) {
		return nil, spec.Forbidden("unrecognised nonce")
	}
	mac := hmac.New(sha1.New, []byte(s.cfg.Registration.SharedSecret))
	adminStr := "notadmin"
	if req.Admin {
		adminStr = "admin"
	}
	mac.Write([]byte(req.Nonce + "\x00" + req.Username + "\x00" + req.Password + "\x00" + adminStr))
	want := hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(strings.ToLower(req.MAC))) {
		return nil, spec.Forbidden("HMAC incorrect")
	}
	resp, err := s.createAccount(r.Context(), registerRequest{Username: strings.ToLower(req.Username), Password: req.Password}, clientIP(r), req.Admin, nil)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// sender returns the roomserver identity of the request's device.
func sender(r *http.Request) roomserver.Sender {
	dev := httputil.Device(r.Context())
	return roomserver.Sender{UserID: dev.UserID, DeviceID: dev.DeviceID}
}
