package syncapi

import (
	"context"

	"github.com/lattice-chat/lattice/storage"
)

// unreadCounts returns the notification counts of a joined room for the user.
func (s *Server) unreadCounts(ctx context.Context, userID string, m storage.Membership) (unreadCounts, error) {
	return unreadCounts{}, nil
}
