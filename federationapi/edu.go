package federationapi

import (
	"context"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// handleEDUs processes the EDUs of a transaction from origin.
func (s *Server) handleEDUs(ctx context.Context, origin spec.ServerName, edus []gomatrixserverlib.EDU) {
}
