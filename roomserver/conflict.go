package roomserver

import (
	"context"
	"errors"

	"github.com/lattice-chat/lattice/storage"
)

// maxConflictAttempts bounds how often one input runs when its writes conflict.
const maxConflictAttempts = 4

// retryConflicts runs input (the processing of one event of roomID, under the room's lock)
// again while it fails with storage.ErrConflict: the write lost to a concurrent one (a
// PostgreSQL serialization failure or deadlock, a locked SQLite database, a row another path
// stored first). That is this server's business, not the sender's: answering a /send
// transaction 500 for it makes the origin back off and send everything again. The room's
// state in memory changes only after a commit, so running the input again starts from what
// is stored; the event itself, if stored meanwhile, is then recognised as known.
func (s *Server) retryConflicts(ctx context.Context, roomID string, input func() error) error {
	var err error
	for attempt := 1; attempt <= maxConflictAttempts; attempt++ {
		if err = input(); !errors.Is(err, storage.ErrConflict) || ctx.Err() != nil {
			return err
		}
		s.log.Warn("write conflict, processing the event again", "room_id", roomID, "attempt", attempt, "err", err)
	}
	return err
}
