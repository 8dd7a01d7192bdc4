package syncapi

import (
	"context"

	"github.com/lattice-chat/lattice/storage"
)

// syncPresence fills the presence of the users who share a room with the requester.
func (s *Server) syncPresence(ctx context.Context, req syncRequest, since, to Token, resp *syncResponse, memberships []storage.Membership) error {
	return nil
}
