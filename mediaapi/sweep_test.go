package mediaapi

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSweepRemovesOrphans: the start-up sweep removes temporary files and files without a
// database row once they have been left alone for orphanAge, and nothing else.
func TestSweepRemovesOrphans(t *testing.T) {
	f := newFixture(t, nil)
	img, ct := encode(t, "png", 40, 40)
	kept := f.upload(t, img, ct, "")
	if res := f.do(t, f.bob, "GET", "/_matrix/client/v1/media/thumbnail/"+testServerName+"/"+kept+"?width=16&height=16&method=crop", nil, ""); res.Code != 200 {
		t.Fatalf("thumbnail: %d %s", res.Code, res.Body)
	}
	dir := f.srv.cfg.Path
	now := time.Now()
	old := now.Add(-orphanAge - time.Minute)
	write := func(key string, mtime time.Time) string {
		t.Helper()
		path := filepath.Join(dir, filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return path
	}
	keptFiles := []string{
		filepath.Join(dir, filepath.FromSlash(mediaKey(testServerName, kept, true))),
		filepath.Join(dir, filepath.FromSlash(thumbnailKey(testServerName, kept, true, 16, 16, "crop"))),
		write("local/ab/cd/.upload-fresh", now),                   // another process may be writing it
		write(mediaKey(testServerName, "freshOrphan", true), now), // its row may be about to commit
		write("unknown/layout", old),
	}
	for _, p := range keptFiles[:2] {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	removedFiles := []string{
		write("local/ab/cd/.upload-123", old),
		write(mediaKey(testServerName, "noRow", true), old),
		write(mediaKey("remote.test", "noRemoteRow", false), old),
		write(thumbnailKey(testServerName, kept, true, 8, 8, "scale"), old),
		write(thumbnailKey("remote.test", "noRemoteRow", false, 8, 8, "scale"), old),
	}

	n, err := f.srv.sweep(context.Background(), now.Add(-orphanAge))
	if err != nil {
		t.Fatal(err)
	}
	if n != len(removedFiles) {
		t.Errorf("removed %d files, want %d", n, len(removedFiles))
	}
	for _, p := range removedFiles {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s survived the sweep: %v", p, err)
		}
	}
	for _, p := range keptFiles {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}
}
