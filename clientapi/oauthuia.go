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

// The m.oauth stage of user-interactive authentication (Client-Server API, "OAuth
// authentication"), valid only for POST /keys/device_signing/upload: a session of the OAuth
// 2.0 API has no password to give, so the user approves the reset on the account page
// (oauthserver), and the client then repeats the request with just the UIA session.

// crossSigningResetURL is the account page's URL for the reset approval.
func (s *Server) crossSigningResetURL(r *http.Request) string {
	base := s.cfg.ClientAPI.PublicBaseURL
	if base == "" {
		base = "http://" + r.Host
		if r.TLS != nil {
			base = "https://" + r.Host
		}
	}
	for len(base) > 0 && base[len(base)-1] == '/' {
		base = base[:len(base)-1]
	}
	return base + "/_lattice/account/?action=org.matrix.cross_signing_reset"
}

// requireCrossSigningAuth authenticates a replacement of the cross-signing keys: the password
// for a session of /login, the m.oauth stage for a session of the OAuth 2.0 API.
func (s *Server) requireCrossSigningAuth(r *http.Request, auth json.RawMessage) error {
	ctx := uiaContext(r)
	dev := httputil.Device(ctx)
	if dev.OAuthClientID == "" || !s.cfg.OAuth.Enabled {
		return s.requirePassword(ctx, dev.UserID, auth)
	}
	var a authData
	if len(auth) > 0 && string(auth) != "null" {
		if err := json.Unmarshal(auth, &a); err != nil {
			return spec.BadJSON("auth must be an object")
		}
	}
	// Only a session issued for this request to this user (uiasessions.go) continues the
	// stage; until the reset is approved, the same session is answered again.
	session := ""
	if a.Session != "" {
		if err := s.checkUIASession(ctx, dev.UserID, a.Session); err == nil {
			ok, err := s.takeCrossSigningReset(ctx, dev.UserID)
			if err != nil {
				return err
			}
			if ok {
				return s.endUIASession(ctx, a.Session)
			}
			session = a.Session
		} else if !errors.Is(err, errUnknownUIASession) {
			return err
		}
	}
	if session == "" {
		var err error
		if session, err = s.issueUIASession(ctx, dev.UserID); err != nil {
			return err
		}
	}
	return &httputil.Error{Status: http.StatusUnauthorized, Extra: map[string]any{
		"flows":   []map[string]any{{"stages": []string{"m.oauth"}}},
		"params":  map[string]any{"m.oauth": map[string]string{"url": s.crossSigningResetURL(r)}},
		"session": session,
	}}
}

// takeCrossSigningReset reports whether the user approved the reset on the account page and
// the approval is unexpired, and uses it up.
func (s *Server) takeCrossSigningReset(ctx context.Context, userID string) (bool, error) {
	until, err := s.db.CrossSigningResetAllowed(ctx, userID)
	if err != nil || until <= time.Now().UnixMilli() {
		return false, err
	}
	return true, s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.AllowCrossSigningReset(ctx, userID, 0) })
}
