package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/storage"
)

// What the OAuth 2.0 authorization server (package oauthserver) does through the client
// API's own code, so that its sign-in pages check passwords under the same failed-login
// limit, register under the same registration mode, and begin and end sessions (devices)
// with the same device-list updates as /login, /register and /logout.

// SignIn checks a user's password (a localpart or user ID of this server) under the
// failed-login limit that /login uses, and refuses a locked account. It returns the user
// ID, or a Matrix error: 403 M_FORBIDDEN, 429 M_LIMIT_EXCEEDED or 401 M_USER_LOCKED.
func (s *Server) SignIn(ctx context.Context, user, password string) (string, error) {
	userID := s.qualify(strings.TrimSpace(user))
	if !strings.HasSuffix(userID, ":"+s.cfg.ServerName) {
		return "", spec.Forbidden("invalid user name or password")
	}
	if err := s.checkPasswordLimited(ctx, userID, password); errors.Is(err, errWrongPassword) {
		return "", spec.Forbidden("invalid user name or password")
	} else if err != nil {
		return "", err
	}
	if err := s.notLocked(ctx, userID); err != nil {
		return "", err
	}
	return userID, nil
}

// RegisterAccount creates an account as POST /register does, under the registration mode
// (regToken is the registration token in token mode) and the per-address limit. It returns
// the new user ID or a Matrix error. When email.registration_requires_email is on it is
// refused: RegisterAccountWithEmail is the way then.
func (s *Server) RegisterAccount(ctx context.Context, ip, username, password, regToken string) (string, error) {
	if s.email.RegistrationRequiresEmail() {
		return "", spec.Forbidden("registration needs a verified email address")
	}
	return s.registerAccount(ctx, ip, username, password, regToken, nil)
}

// RegisterAccountWithEmail is RegisterAccount for an address verified by the email
// registration session (sid, clientSecret): the session is used up, and the address bound,
// in the transaction that creates the account. email.ErrNotValidated while the mailed link
// was not confirmed.
func (s *Server) RegisterAccountWithEmail(ctx context.Context, ip, username, password, regToken, sid, clientSecret string) (string, error) {
	if s.email == nil {
		return "", errEmailNotSupported
	}
	creds := threePIDCreds{SID: sid, ClientSecret: clientSecret}
	if err := s.checkUnbound(ctx, creds); err != nil {
		return "", err
	}
	return s.registerAccount(ctx, ip, username, password, regToken, &creds)
}

func (s *Server) registerAccount(ctx context.Context, ip, username, password, regToken string, creds *threePIDCreds) (string, error) {
	if ok, wait := s.registrations.Allow(ip); !ok {
		return "", spec.LimitExceeded("too many registrations from this address", wait.Milliseconds())
	}
	auth, _ := json.Marshal(authData{Type: "m.login.dummy"})
	if regToken != "" {
		auth, _ = json.Marshal(authData{Type: "m.login.registration_token", Token: regToken})
	}
	dbToken, err := s.registrationAuth(ctx, auth)
	if err != nil {
		if s.cfg.Registration.Mode == config.RegistrationDisabled {
			return "", err
		}
		// The stage failed (a 401 asking for it again, for a JSON client): a wrong token.
		return "", spec.Forbidden("invalid registration token")
	}
	username = lowerASCII(strings.TrimSpace(username))
	userID := s.qualify(username)
	err = s.checkExclusiveUser(ctx, userID)
	if err == nil {
		var bind func(tx *storage.Tx, userID string) error
		if creds != nil {
			bind = func(tx *storage.Tx, userID string) error { return s.bindRegistrationEmail(ctx, tx, userID, *creds) }
		}
		_, err = createAccountWith(ctx, s.db, s.cfg, username, password, false, bind)
	}
	if dbToken != "" {
		err = errors.Join(err, s.finishRegistrationToken(ctx, dbToken, err == nil))
	}
	if err != nil {
		return "", err
	}
	return userID, nil
}

// StartSession begins a refreshable session (a device, created or renewed) of userID for the
// OAuth client clientID.
func (s *Server) StartSession(ctx context.Context, userID, deviceID, displayName, ip, clientID string) (*Session, error) {
	return s.newSession(ctx, userID, deviceID, displayName, ip, clientID, true)
}

// EndSession ends sessions of userID as /logout does: the devices go with their keys, and
// the device list changes are told. With no device named, all of them.
func (s *Server) EndSession(ctx context.Context, userID string, deviceIDs ...string) error {
	var pos int64
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		var err error
		pos, err = removeDevices(ctx, tx, userID, deviceIDs...)
		return err
	})
	if err != nil {
		return err
	}
	s.deviceListChanged(ctx, userID, pos, deviceIDs...)
	return nil
}

// ChangePassword sets a new password after checking the current one (under the
// failed-login limit). Sessions are kept.
func (s *Server) ChangePassword(ctx context.Context, userID, current, password string) error {
	if err := s.checkPasswordLimited(ctx, userID, current); errors.Is(err, errWrongPassword) {
		return spec.Forbidden("the current password is wrong")
	} else if err != nil {
		return err
	}
	hash, err := hashPassword(s.cfg, password)
	if err != nil {
		return err
	}
	return s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.SetPassword(ctx, userID, hash) })
}

// SetDisplayName sets userID's display name as PUT /profile/{userId}/displayname does,
// updating the member events of the user's rooms.
func (s *Server) SetDisplayName(ctx context.Context, userID, name string) error {
	if len(name) > 256 {
		return spec.BadJSON("displayname is too long")
	}
	p, err := s.db.Profile(ctx, userID)
	if err != nil {
		return err
	}
	p.DisplayName = name
	if err := s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.SetProfile(ctx, userID, *p) }); err != nil {
		return err
	}
	return s.rooms.UpdateProfile(ctx, userID)
}

// ResetPasswordWithEmail sets a forgotten password, proved by the validated email reset
// session (sid, clientSecret), which it uses up; every device of the account is logged out,
// as POST /account/password's reset does. It returns the account's user ID.
func (s *Server) ResetPasswordWithEmail(ctx context.Context, sid, clientSecret, newPassword string) (string, error) {
	if s.email == nil {
		return "", errEmailNotSupported
	}
	return s.resetWithEmail(ctx, threePIDCreds{SID: sid, ClientSecret: clientSecret}, newPassword, true)
}
