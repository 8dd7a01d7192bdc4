package clientapi

import (
	"crypto/rand"
	"net/http"
	"time"

	"github.com/lattice-chat/lattice/internal/httputil"
)

// openIDLifetime is how long an OpenID token is valid. The LiveKit JWT service of
// MatrixRTC checks it once, when a client asks it for an SFU token.
const openIDLifetime = time.Hour

// handleOpenIDRequestToken handles POST /user/{userId}/openid/request_token: a token that
// only proves who the user is to a third party, which checks it through the federation
// API's GET /_matrix/federation/v1/openid/userinfo.
func (s *Server) handleOpenIDRequestToken(r *http.Request) (any, error) {
	userID, err := ownUser(r)
	if err != nil {
		return nil, err
	}
	var body map[string]any // the spec's body is an empty object
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	token := rand.Text()
	now := time.Now()
	if err := s.db.InsertOpenIDToken(r.Context(), token, userID, now.Add(openIDLifetime).UnixMilli(), now.UnixMilli()); err != nil {
		return nil, err
	}
	return map[string]any{
		"access_token":       token,
		"token_type":         "Bearer",
		"matrix_server_name": s.cfg.ServerName,
		"expires_in":         int(openIDLifetime / time.Second),
	}, nil
}
