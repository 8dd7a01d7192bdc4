package mediaapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Store holds the bytes of media and thumbnails under opaque keys ("local/ab/cd/ID"). It is
// the seam for object storage: FileStore is the only implementation today.
type Store interface {
	// Put stores the content of r under key and returns its size. When Put returns nil the
	// content is durable: a crash afterwards does not lose it. On error nothing is stored.
	Put(ctx context.Context, key string, r io.Reader) (int64, error)
	// Open returns the content stored under key, or an error wrapping fs.ErrNotExist.
	Open(ctx context.Context, key string) (io.ReadSeekCloser, error)
	// Delete removes the content under key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// FileStore keeps media as files below a directory.
type FileStore struct {
	dir string
}

// NewFileStore returns a store rooted at dir, creating it if needed.
func NewFileStore(dir string) (*FileStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("media store: %w", err)
	}
	return &FileStore{dir: dir}, nil
}

// path maps a key to a file path. Keys are built by this package from validated media IDs;
// the check here is a second line of defence against path traversal.
func (fs *FileStore) path(key string) (string, error) {
	for _, part := range strings.Split(key, "/") {
		if part == "" || part == "." || part == ".." || strings.ContainsAny(part, `\`+"\x00") {
			return "", fmt.Errorf("media store: invalid key %q", key)
		}
	}
	return filepath.Join(fs.dir, filepath.FromSlash(key)), nil
}

// Put writes r to a temporary file in the destination directory, syncs it, renames it into
// place and syncs the directory, so that an acknowledged upload survives a crash.
func (fs *FileStore) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	path, err := fs.path(key)
	if err != nil {
		return 0, err
	}
	dir := filepath.Dir(path)
	if err := fs.mkdirs(dir); err != nil {
		return 0, fmt.Errorf("media store: %w", err)
	}
	f, err := os.CreateTemp(dir, ".upload-*")
	if err != nil {
		return 0, fmt.Errorf("media store: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	n, err := io.Copy(f, ctxReader{ctx, r})
	if err != nil {
		return n, err // the caller maps *http.MaxBytesError to M_TOO_LARGE
	}
	if err := f.Sync(); err != nil {
		return n, fmt.Errorf("media store: sync %s: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return n, fmt.Errorf("media store: close %s: %w", key, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return n, fmt.Errorf("media store: rename %s: %w", key, err)
	}
	committed = true
	if err := syncDir(dir); err != nil {
		return n, fmt.Errorf("media store: sync directory of %s: %w", key, err)
	}
	return n, nil
}

// Open opens the file under key.
func (fs *FileStore) Open(_ context.Context, key string) (io.ReadSeekCloser, error) {
	path, err := fs.path(key)
	if err != nil {
		return nil, err
	}
	return os.Open(path)
}

// Delete removes the file under key.
func (fs *FileStore) Delete(_ context.Context, key string) error {
	path, err := fs.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("media store: %w", err)
	}
	return nil
}

// mkdirs creates dir and its missing parents below the store's root durably: each new
// directory's entry is synced into its parent, or a crash could lose a whole shard.
func (fs *FileStore) mkdirs(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	var created []string
	for d := dir; d != fs.dir && len(d) > len(fs.dir); d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		created = append(created, d)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, d := range created {
		if err := syncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ctxReader stops a copy when the request is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// mediaKey is where the content of a media item is stored: sharded by the first characters
// of its ID so that no directory grows too large. Remote media will live under "remote/".
func mediaKey(serverName, mediaID string, local bool) string {
	if local {
		return "local/" + shard(mediaID) + "/" + mediaID
	}
	return "remote/" + serverName + "/" + shard(mediaID) + "/" + mediaID
}

// thumbnailKey is where a generated thumbnail is stored.
func thumbnailKey(serverName, mediaID string, local bool, width, height int, method string) string {
	base := "thumbnails/local/" + shard(mediaID) + "/" + mediaID
	if !local {
		base = "thumbnails/remote/" + serverName + "/" + shard(mediaID) + "/" + mediaID
	}
	return fmt.Sprintf("%s/%dx%d-%s", base, width, height, method)
}

func shard(mediaID string) string {
	id := mediaID + "____"
	return id[0:2] + "/" + id[2:4]
}
