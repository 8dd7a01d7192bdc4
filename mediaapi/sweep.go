package mediaapi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lattice-chat/lattice/storage"
)

// orphanAge is how long a file in the media directory must have been left alone before the
// start-up sweep removes it for lack of a database row. Another process sharing the
// directory may be writing a younger one right now (FileStore.Put writes a temporary file,
// renames it into place and only then commits the row), and a file being written has its
// modification time refreshed by every write.
const orphanAge = 15 * time.Minute

// Start sweeps the media directory in the background: an upload, a remote fetch or a
// thumbnail cut short by a crash leaves a temporary ".upload-*" file, or a file renamed into
// place whose database row was never committed, and nothing else would ever remove them.
func (s *Server) Start(ctx context.Context) error {
	ctx, s.stopSweep = context.WithCancel(ctx)
	s.sweepDone = make(chan struct{})
	go func() {
		defer close(s.sweepDone)
		removed, err := s.sweep(ctx, s.now().Add(-orphanAge))
		if err != nil && ctx.Err() == nil {
			s.log.Error("sweep media directory", "err", err)
		} else if removed > 0 {
			s.log.Info("removed orphaned media files", "count", removed)
		}
	}()
	return nil
}

// Close stops the sweep and waits for it.
func (s *Server) Close() error {
	if s.stopSweep != nil {
		s.stopSweep()
		<-s.sweepDone
	}
	return nil
}

// sweep removes the files of the media directory last modified before cutoff that are
// temporary files or have no database row, and returns how many it removed.
func (s *Server) sweep(ctx context.Context, cutoff time.Time) (int, error) {
	fstore, ok := s.store.(*FileStore)
	if !ok {
		return 0, nil
	}
	removed := 0
	err := filepath.WalkDir(fstore.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		} else if !info.ModTime().Before(cutoff) {
			return nil
		}
		rel, err := filepath.Rel(fstore.dir, path)
		if err != nil {
			return err
		}
		orphan := strings.HasPrefix(d.Name(), ".upload-")
		if !orphan {
			if orphan, err = s.unrecorded(ctx, filepath.ToSlash(rel)); err != nil {
				return err
			}
		}
		if !orphan {
			return nil
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		s.log.Warn("removed orphaned media file", "path", rel)
		removed++
		return nil
	})
	return removed, err
}

// unrecorded reports whether the file under key has no database row: the inverse of
// mediaKey and thumbnailKey. Keys of another shape are left alone.
func (s *Server) unrecorded(ctx context.Context, key string) (bool, error) {
	parts := strings.Split(key, "/")
	var err error
	switch {
	case len(parts) == 4 && parts[0] == "local":
		_, err = s.db.Media(ctx, s.serverName, parts[3])
	case len(parts) == 5 && parts[0] == "remote":
		_, _, err = s.db.RemoteMedia(ctx, parts[1], parts[4])
	case len(parts) == 6 && parts[0] == "thumbnails" && parts[1] == "local":
		err = s.thumbnailRow(ctx, s.serverName, parts[4], parts[5])
	case len(parts) == 7 && parts[0] == "thumbnails" && parts[1] == "remote":
		err = s.thumbnailRow(ctx, parts[2], parts[5], parts[6])
	default:
		return false, nil
	}
	if errors.Is(err, storage.ErrNotFound) {
		return true, nil
	}
	return false, err
}

// thumbnailRow looks up the row of the thumbnail file named "WxH-method".
func (s *Server) thumbnailRow(ctx context.Context, serverName, mediaID, name string) error {
	var width, height int
	var method string
	w, rest, ok1 := strings.Cut(name, "x")
	h, method, ok2 := strings.Cut(rest, "-")
	if _, err := fmt.Sscan(w, &width); err != nil || !ok1 || !ok2 {
		return nil
	}
	if _, err := fmt.Sscan(h, &height); err != nil {
		return nil
	}
	_, err := s.db.Thumbnail(ctx, serverName, mediaID, width, height, method)
	return err
}
