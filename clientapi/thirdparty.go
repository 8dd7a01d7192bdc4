package clientapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// handleThreePIDs handles GET /account/3pid: the third-party IDs bound to the account, by an
// admin (PUT /_synapse/admin/v2/users) or, when the server sends email, by the user with a
// verified address (email.go).
func (s *Server) handleThreePIDs(r *http.Request) (any, error) {
	tps, err := s.db.ThreePIDs(r.Context(), httputil.Device(r.Context()).UserID)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(tps))
	for _, t := range tps {
		out = append(out, map[string]any{"medium": t.Medium, "address": t.Address,
			"validated_at": t.ValidatedAt, "added_at": t.AddedAt})
	}
	return map[string]any{"threepids": out}, nil
}

// threePIDUser returns the user ID bound to the third-party ID of an m.id.thirdparty login
// identifier. An unknown one is 403 M_FORBIDDEN, as a wrong password is: a login attempt
// does not tell which addresses are bound.
func (s *Server) threePIDUser(ctx context.Context, medium, address string) (string, error) {
	if medium == "" || address == "" {
		return "", spec.BadJSON("identifier.medium and identifier.address are required")
	}
	addr, err := storage.CanonicalThreePID(medium, address)
	if err != nil {
		return "", spec.Forbidden("invalid third-party ID or password")
	}
	userID, err := s.db.UserByThreePID(ctx, medium, addr)
	if errors.Is(err, storage.ErrNotFound) {
		return "", spec.Forbidden("invalid third-party ID or password")
	}
	return userID, err
}

// handleThirdPartyProtocols handles GET /thirdparty/protocols: the protocols of the
// registered application services (bridges), as they describe them.
func (s *Server) handleThirdPartyProtocols(r *http.Request) (any, error) {
	if s.appservices == nil {
		return map[string]any{}, nil
	}
	return s.appservices.Protocols(r.Context()), nil
}
