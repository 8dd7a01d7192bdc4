package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// Login tokens (m.login.token) are single-use and short-lived: the sso package makes them
// at the end of a single sign-on, POST /v1/login/get_token makes them for a signed-in user,
// and POST /login consumes them. They are rows of login_tokens, so any process of the server
// accepts a token another made.

// loginFlows is GET /login's list: passwords, login tokens, single sign-on with the
// configured identity providers, and application services' logins. With the OAuth 2.0 API
// on, m.login.sso is always offered and marked oauth_aware_preferred ("OAuth 2.0 aware
// clients": the server MUST provide the flow and mark it preferred, providers or not): its
// redirect goes to this server's sign-in page, which offers the password and the providers
// (package sso, web.go).
func (s *Server) loginFlows() []map[string]any {
	flows := []map[string]any{{"type": "m.login.password"}}
	oauth := s.cfg.OAuth.Enabled
	if providers := s.cfg.SSO.Providers; len(providers) > 0 || oauth {
		flow := map[string]any{"type": "m.login.sso"}
		idps := make([]map[string]string, 0, len(providers))
		for _, pc := range providers {
			p := pc.WithDefaults()
			idp := map[string]string{"id": p.ID, "name": p.Name}
			if p.Icon != "" {
				idp["icon"] = p.Icon
			}
			if p.Brand != "" {
				idp["brand"] = p.Brand
			}
			idps = append(idps, idp)
		}
		if len(idps) > 0 {
			flow["identity_providers"] = idps
		}
		if oauth {
			flow["oauth_aware_preferred"] = true
		}
		flows = append(flows, flow)
	}
	if len(s.cfg.SSO.Providers) > 0 || oauth || s.cfg.SSO.GetLoginToken {
		flows = append(flows, map[string]any{"type": "m.login.token", "get_login_token": s.cfg.SSO.GetLoginToken})
	}
	if s.appservices != nil && len(s.appservices.Registry().Services()) > 0 {
		flows = append(flows, map[string]any{"type": loginTypeAppService})
	}
	return flows
}

// loginTokenUser consumes a login token and returns its user: 403 M_FORBIDDEN for a token
// that is unknown, used already or expired.
func (s *Server) loginTokenUser(ctx context.Context, token string) (string, error) {
	if token == "" {
		return "", spec.BadJSON("token is required")
	}
	var userID string
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		var err error
		userID, err = tx.ConsumeLoginToken(ctx, httputil.HashToken(token), time.Now().UnixMilli())
		return err
	})
	if errors.Is(err, storage.ErrNotFound) {
		return "", spec.Forbidden("invalid or expired login token")
	} else if err != nil {
		return "", err
	}
	if acc, err := s.db.Account(ctx, userID); err != nil || acc.Deactivated {
		return "", spec.Forbidden("invalid or expired login token")
	}
	return userID, nil
}

// handleGetLoginToken handles POST /_matrix/client/v1/login/get_token: after the user
// confirms their password or signs in again at their identity provider (every time, as the
// spec requires), a login token for another device.
func (s *Server) handleGetLoginToken(r *http.Request) (any, error) {
	if !s.cfg.SSO.GetLoginToken {
		return nil, spec.Unrecognized("login tokens are turned off on this server")
	}
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
	if ok, wait := s.loginTokens.Allow(dev.UserID); !ok {
		return nil, spec.LimitExceeded("too many login tokens requested", wait.Milliseconds())
	}
	token := httputil.NewAccessToken()
	now := time.Now()
	lifetime := s.cfg.SSO.LoginTokenLifetime
	err := s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		return tx.InsertLoginToken(r.Context(), httputil.HashToken(token), dev.UserID, now.Add(lifetime).UnixMilli(), now.UnixMilli())
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{"login_token": token, "expires_in_ms": lifetime.Milliseconds()}, nil
}

// canGetLoginToken is the m.get_login_token capability of a user: the endpoint is on and the
// user has a password to confirm or a single sign-on identity to sign in with again.
func (s *Server) canGetLoginToken(ctx context.Context, userID string) bool {
	if !s.cfg.SSO.GetLoginToken {
		return false
	}
	if acc, err := s.db.Account(ctx, userID); err == nil && acc.PasswordHash != "" {
		return true
	}
	return s.ssoLinked(ctx, userID)
}
