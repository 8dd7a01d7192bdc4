package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"golang.org/x/crypto/bcrypt"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/password"
	"github.com/lattice-chat/lattice/storage"
)

// authData is the "auth" object of a user-interactive authentication request.
type authData struct {
	Type       string          `json:"type"`
	Session    string          `json:"session"`
	Password   string          `json:"password"`
	Token      string          `json:"token"`
	Identifier *userIdentifier `json:"identifier"`
	User       string          `json:"user"`
}

type userIdentifier struct {
	Type    string `json:"type"`
	User    string `json:"user"`
	Medium  string `json:"medium"`  // m.id.thirdparty
	Address string `json:"address"` // m.id.thirdparty
}

// uiaRequired is the 401 response that tells the client which flows it may complete.
func (s *Server) uiaRequired(flows [][]string, errMsg string) error {
	return s.uiaRequiredSession(flows, errMsg, s.uia.issue())
}

// uiaRequiredSession is uiaRequired for a session that goes on (a stage completed elsewhere).
func (s *Server) uiaRequiredSession(flows [][]string, errMsg, session string) error {
	fl := make([]map[string]any, 0, len(flows))
	for _, f := range flows {
		fl = append(fl, map[string]any{"stages": f})
	}
	e := &httputil.Error{Status: http.StatusUnauthorized, Extra: map[string]any{
		"flows": fl, "params": map[string]any{}, "session": session,
	}}
	if errMsg != "" {
		e.Code, e.Msg = "M_FORBIDDEN", errMsg
	}
	return e
}

// requirePassword runs user-interactive authentication for an authenticated user (device
// deletion, password change, deactivation, cross-signing key replacement, login tokens): the
// m.login.password stage, or for a user linked to a configured single sign-on provider the
// m.login.sso stage, which its fallback page (the sso package) completes. Every session it
// issues is bound to the user and the request (uiasessions.go); a session presented with
// another request is refused, whatever the stage.
func (s *Server) requirePassword(ctx context.Context, userID string, auth json.RawMessage) error {
	flows, sso := s.userAuthFlows(ctx, userID)
	if len(auth) == 0 || string(auth) == "null" {
		return s.uiaRequiredFor(ctx, userID, flows, "")
	}
	var a authData
	if err := json.Unmarshal(auth, &a); err != nil {
		return spec.BadJSON("auth must be an object")
	}
	if a.Session != "" {
		if err := s.checkUIASession(ctx, userID, a.Session); errors.Is(err, errUnknownUIASession) {
			return s.uiaRequiredFor(ctx, userID, flows, "")
		} else if err != nil {
			return err
		}
	}
	if err := s.uiaStage(ctx, userID, a, flows, sso); err != nil {
		return err
	}
	return s.endUIASession(ctx, a.Session)
}

// uiaStage checks the stage of a, for a session (if any) that checkUIASession accepted.
func (s *Server) uiaStage(ctx context.Context, userID string, a authData, flows [][]string, sso bool) error {
	if sso && (a.Type == "m.login.sso" || (a.Type == "" && a.Session != "")) {
		return s.checkSSOStage(ctx, userID, a.Session, flows)
	}
	if a.Type != "m.login.password" {
		return s.uiaRequiredFor(ctx, userID, flows, "")
	}
	who := a.User
	if a.Identifier != nil {
		who = a.Identifier.User
		if a.Identifier.Type == "m.id.thirdparty" {
			var err error
			if who, err = s.threePIDUser(ctx, a.Identifier.Medium, a.Identifier.Address); err != nil {
				return spec.Forbidden("you can only authenticate as yourself")
			}
		}
	}
	if who != "" && s.qualify(who) != userID {
		// Not a failed stage to retry: the request is for another user than the one the
		// password would prove. 403, as the reference server answers.
		return spec.Forbidden("you can only authenticate as yourself")
	}
	if err := s.checkPasswordLimited(ctx, userID, a.Password); errors.Is(err, errWrongPassword) {
		if a.Session != "" {
			return s.uiaRequiredSession(flows, "invalid password", a.Session)
		}
		return s.uiaRequiredFor(ctx, userID, flows, "invalid password")
	} else if err != nil {
		return err
	}
	return nil
}

// errWrongPassword is checkPasswordLimited's answer to a wrong password.
var errWrongPassword = errors.New("wrong password")

// checkPasswordLimited checks a password under the per-account limit on wrong passwords that
// /login and every user-interactive authentication share, so that a stolen access token
// gives no faster way to guess the account's password: errWrongPassword for a wrong one,
// M_LIMIT_EXCEEDED once the account's allowance is spent (checked before the password, so
// that guessing stops working, not just failing).
func (s *Server) checkPasswordLimited(ctx context.Context, userID, password string) error {
	if blocked, wait := s.failedLogins.Blocked(userID); blocked {
		return spec.LimitExceeded("too many wrong passwords for this account", wait.Milliseconds())
	}
	if !s.checkPassword(ctx, userID, password) {
		s.failedLogins.Allow(userID)
		return errWrongPassword
	}
	return nil
}

// checkPassword reports whether password is the user's current password.
func (s *Server) checkPassword(ctx context.Context, userID, password string) bool {
	acc, err := s.db.Account(ctx, userID)
	if err != nil || acc.Deactivated || acc.PasswordHash == "" {
		// Spend the same time as a real check, so that timing does not reveal accounts.
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(acc.PasswordHash), []byte(password)) == nil
}

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("lattice-dummy-password"), bcrypt.DefaultCost)

// qualify turns a localpart or user ID into a user ID on this server. This server's
// localparts are lower case (registration maps A-Z onto a-z), so the user may be named in
// any case, bare or as a full user ID.
func (s *Server) qualify(user string) string {
	if local, ok := strings.CutPrefix(user, "@"); ok {
		if localpart, ok := strings.CutSuffix(local, ":"+s.cfg.ServerName); ok {
			return "@" + lowerASCII(localpart) + ":" + s.cfg.ServerName
		}
		return user
	}
	return "@" + lowerASCII(user) + ":" + s.cfg.ServerName
}

// lowerASCII maps A-Z onto a-z and leaves every other byte alone: the first step of the
// spec's suggested mapping onto the user ID grammar (appendices, "Mapping from other character
// sets"). Unlike strings.ToLower it maps no other character onto ASCII (the Kelvin sign onto
// "k"), so no look-alike of a name reaches its account.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func hashPassword(cfg *config.Config, pw string) (string, error) {
	return password.Hash(pw, cfg.Registration.MinPasswordLength)
}

// newDevice creates (or, for a reused device ID, refreshes) a device with a new access token.
func (s *Server) newDevice(ctx context.Context, userID, deviceID, displayName, ip string) (string, string, error) {
	sess, err := s.newSession(ctx, userID, deviceID, displayName, ip, "", false)
	if err != nil {
		return "", "", err
	}
	return sess.DeviceID, sess.AccessToken, nil
}

// newSession creates (or, for a reused device ID, renews) a device with a new access token;
// with refresh, the token expires and a refresh token renews it (refresh.go). clientID is
// the OAuth client the session is for, "" for /login and /register.
func (s *Server) newSession(ctx context.Context, userID, deviceID, displayName, ip, clientID string, refresh bool) (*Session, error) {
	if deviceID == "" {
		deviceID = strings.ToUpper(config.RandomSecret(8))
		deviceID = strings.NewReplacer("-", "A", "_", "B").Replace(deviceID)
	}
	sess := &Session{UserID: userID, DeviceID: deviceID, AccessToken: httputil.NewAccessToken()}
	now := time.Now()
	var tokens storage.SessionTokens
	if refresh {
		tokens = s.renew(sess, now)
	}
	var pos int64
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		err := tx.UpsertDevice(ctx, storage.Device{UserID: userID, DeviceID: deviceID, DisplayName: displayName, CreatedTS: now.UnixMilli(), LastSeenIP: ip}, httputil.HashToken(sess.AccessToken))
		if err != nil {
			return err
		}
		if refresh {
			if err := tx.SetDeviceRefresh(ctx, userID, deviceID, clientID, tokens); err != nil {
				return err
			}
		}
		// A new device is a device list change (its keys follow with /keys/upload).
		pos, err = tx.DeviceListChanged(ctx, userID)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.deviceListChanged(ctx, userID, pos, deviceID)
	return sess, nil
}
