package syncapi

import (
	"context"

	"github.com/lattice-chat/lattice/storage"
)

// syncEphemeral fills the ephemeral events (receipts, typing) of the joined rooms.
func (s *Server) syncEphemeral(ctx context.Context, req syncRequest, since, to Token, resp *syncResponse, memberships []storage.Membership) error {
	return nil
}
