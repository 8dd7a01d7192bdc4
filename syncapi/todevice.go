package syncapi

import (
	"context"

	"github.com/lattice-chat/lattice/storage"
)

// syncToDevice fills the to-device messages of the requesting device.
func (s *Server) syncToDevice(ctx context.Context, req syncRequest, since, to Token, resp *syncResponse, memberships []storage.Membership) error {
	return nil
}
