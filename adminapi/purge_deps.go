package adminapi

import (
	"context"

	"github.com/lattice-chat/lattice/storage"
)

// HistoryPurger runs purges of room history in the background (retention.Purger).
type HistoryPurger interface {
	// Begin starts a purge of the room's events with depth below beforeDepth and returns its
	// ID, or retention.ErrInProgress.
	Begin(ctx context.Context, room *storage.Room, beforeDepth int64, deleteLocal bool) (string, error)
}

// SetPurger gives the admin API the purger that runs purge_history; set it before serving.
func (s *Server) SetPurger(p HistoryPurger) { s.purger = p }
