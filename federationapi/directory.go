package federationapi

import (
	"errors"
	"net/http"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// handleQueryDirectory handles GET /_matrix/federation/v1/query/directory?room_alias=: the
// room a local alias points to, and the servers to join it through (only us until rooms
// span servers).
func (s *Server) handleQueryDirectory(r *http.Request) (any, error) {
	alias := r.URL.Query().Get("room_alias")
	if alias == "" {
		return nil, spec.MissingParam("room_alias is required")
	}
	_, server, ok := strings.Cut(alias, ":")
	if !strings.HasPrefix(alias, "#") || !ok || spec.ServerName(server) != s.cfg.ServerName {
		return nil, spec.InvalidParam("room_alias is not an alias of this server")
	}
	roomID, _, err := s.db.Alias(r.Context(), alias)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("room alias not found")
	} else if err != nil {
		return nil, err
	}
	return map[string]any{"room_id": roomID, "servers": []spec.ServerName{s.cfg.ServerName}}, nil
}
