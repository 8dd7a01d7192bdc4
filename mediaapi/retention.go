package mediaapi

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/lattice-chat/lattice/storage"
)

// DeleteLocalMedia deletes a media item of this server, for the message retention job once the
// messages that referred to it are gone: its rows first (downloads answer 404 from then on),
// then its file and its thumbnails. A media ID that is unknown or malformed is not an error.
func (s *Server) DeleteLocalMedia(ctx context.Context, mediaID string) error {
	if !mediaIDPattern.MatchString(mediaID) {
		return nil
	}
	if err := s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.DeleteMedia(ctx, s.serverName, mediaID) }); err != nil {
		return err
	}
	if err := s.store.Delete(ctx, mediaKey(s.serverName, mediaID, true)); err != nil {
		return err
	}
	if fstore, ok := s.store.(*FileStore); ok {
		dir, err := fstore.path("thumbnails/local/" + shard(mediaID) + "/" + mediaID)
		if err != nil {
			return err
		}
		if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("media store: %w", err)
		}
	}
	return nil
}
