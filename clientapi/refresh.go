package clientapi

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// Refresh tokens (Client-Server API, "Refreshing access tokens"), for /login and /register
// with refresh_token: true, POST /refresh, and the OAuth 2.0 API's refresh token grant, which
// all share one mechanism: a refreshable session is a device whose access token expires after
// oauth.access_token_lifetime and whose refresh token (storage.RefreshDevice) renews both.

// Session is a device's new access token, with a refresh token when the session is
// refreshable.
type Session struct {
	UserID       string
	DeviceID     string
	AccessToken  string
	RefreshToken string        // "": the session has none and the access token never expires
	ExpiresIn    time.Duration // the access token's lifetime when RefreshToken is set
}

// addRefresh adds the refresh token and the access token's lifetime to a /login, /register
// or /refresh answer, when the session has them.
func (sess *Session) addRefresh(resp map[string]any) {
	if sess.RefreshToken != "" {
		resp["refresh_token"] = sess.RefreshToken
		resp["expires_in_ms"] = sess.ExpiresIn.Milliseconds()
	}
}

// renew gives sess a new random refresh token and lifetime and returns what storage keeps of
// them and of sess's access token.
func (s *Server) renew(sess *Session, now time.Time) storage.SessionTokens {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	sess.RefreshToken = "latr_" + base64.RawURLEncoding.EncodeToString(b)
	return s.sessionTokens(sess, now)
}

func (s *Server) sessionTokens(sess *Session, now time.Time) storage.SessionTokens {
	sess.ExpiresIn = s.cfg.OAuth.AccessTokenLifetime
	t := storage.SessionTokens{
		TokenHash:      httputil.HashToken(sess.AccessToken),
		TokenExpiresTS: now.Add(sess.ExpiresIn).UnixMilli(),
		RefreshHash:    httputil.HashToken(sess.RefreshToken),
	}
	if l := s.cfg.OAuth.RefreshTokenLifetime; l > 0 {
		t.RefreshExpiresTS = now.Add(l).UnixMilli()
	}
	return t
}

// derive gives sess the access and refresh tokens that a refresh with refreshToken makes
// with salt: the same ones every time, so that a repeated or concurrent refresh answers with
// tokens that work (storage.RefreshDevice). Without the random salt, which is stored, the
// tokens cannot be derived from the refresh token.
func (s *Server) derive(sess *Session, refreshToken, salt string, now time.Time) storage.SessionTokens {
	mac := func(kind string) string {
		m := hmac.New(sha256.New, []byte(salt))
		m.Write([]byte(kind + "|" + refreshToken))
		return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	sess.AccessToken, sess.RefreshToken = "lat_"+mac("access"), "latr_"+mac("refresh")
	return s.sessionTokens(sess, now)
}

// ErrUnknownRefreshToken is RefreshSession's answer for a refresh token that no session
// holds: never issued, replaced and superseded, lapsed, or its session ended.
var ErrUnknownRefreshToken = errors.New("unknown refresh token")

// RefreshSession renews the session holding refreshToken with new access and refresh tokens.
// clientID must be the OAuth client holding the session: "" for a session of /login or
// /register, so that neither kind of refresh token works at the other's endpoint.
func (s *Server) RefreshSession(ctx context.Context, refreshToken, clientID string) (*Session, error) {
	if refreshToken == "" {
		return nil, ErrUnknownRefreshToken
	}
	hash := httputil.HashToken(refreshToken)
	d, err := s.db.DeviceByRefreshToken(ctx, hash)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, s.refreshReplayed(ctx, hash)
	} else if err != nil {
		return nil, err
	} else if d.OAuthClientID != clientID {
		return nil, ErrUnknownRefreshToken
	}
	sess := &Session{}
	now := time.Now()
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		d, err := tx.RefreshDevice(ctx, hash, now.UnixMilli(), httputil.NewAccessToken(), func(salt string) storage.SessionTokens {
			return s.derive(sess, refreshToken, salt, now)
		})
		if err != nil {
			return err
		}
		sess.UserID, sess.DeviceID = d.UserID, d.DeviceID
		return nil
	})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrUnknownRefreshToken
	} else if err != nil {
		return nil, err
	}
	return sess, nil
}

// refreshReplayed ends the session whose latest superseded refresh token hashes to hash: a
// refresh token used again after its replacement was used betrays a copy in other hands
// (OAuth 2.0 API: the server "SHOULD consider that the session is compromised ... and SHOULD
// revoke the session"). It returns ErrUnknownRefreshToken, or the error ending it.
func (s *Server) refreshReplayed(ctx context.Context, hash string) error {
	d, err := s.db.DeviceBySupersededRefreshToken(ctx, hash)
	if errors.Is(err, storage.ErrNotFound) {
		return ErrUnknownRefreshToken
	} else if err != nil {
		return err
	}
	s.log.Warn("superseded refresh token used again: session ended", "user_id", d.UserID, "device_id", d.DeviceID)
	if err := s.EndSession(ctx, d.UserID, d.DeviceID); err != nil {
		return err
	}
	return ErrUnknownRefreshToken
}

// handleRefresh handles POST /refresh: 401 M_UNKNOWN_TOKEN for a refresh token that is
// unknown or was replaced and superseded.
func (s *Server) handleRefresh(r *http.Request) (any, error) {
	var req struct {
		RefreshToken *string `json:"refresh_token"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.RefreshToken == nil {
		return nil, spec.MissingParam("refresh_token is required")
	}
	sess, err := s.RefreshSession(r.Context(), *req.RefreshToken, "")
	if errors.Is(err, ErrUnknownRefreshToken) {
		return nil, &httputil.Error{Status: http.StatusUnauthorized, Code: "M_UNKNOWN_TOKEN", Msg: "unknown or used refresh token", Extra: map[string]any{"soft_logout": false}}
	} else if err != nil {
		return nil, err
	}
	resp := map[string]any{"access_token": sess.AccessToken}
	sess.addRefresh(resp)
	return resp, nil
}
