package federationapi

import (
	"errors"
	"net/http"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// handleOpenIDUserInfo handles GET /_matrix/federation/v1/openid/userinfo: who an OpenID
// token from POST /user/{userId}/openid/request_token belongs to. It is not signed with
// X-Matrix: the caller is any third party the user gave the token to (the LiveKit JWT
// service of MatrixRTC). The token comes in the access_token query parameter, or as a
// Bearer token, which some callers send instead.
func (s *Server) handleOpenIDUserInfo(r *http.Request) (any, error) {
	token := r.URL.Query().Get("access_token")
	if token == "" {
		token, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	if token == "" {
		return nil, spec.MissingToken("access_token is required")
	}
	userID, err := s.db.OpenIDUser(r.Context(), token, s.cfg.Now().UnixMilli())
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.UnknownToken("the access token is unknown or has expired")
	} else if err != nil {
		return nil, err
	}
	return map[string]string{"sub": userID}, nil
}
