package cluster

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestLockFile: a second holder is refused with a message naming the database, and the lock
// can be taken again once released. (flock locks belong to the open file, so a second open
// in the same process conflicts as another process would; e2e/cluster_test.go checks the
// release on SIGKILL.)
func TestLockFile(t *testing.T) {
	dir := t.TempDir()
	lock, db := filepath.Join(dir, "lattice.db.lock"), filepath.Join(dir, "lattice.db")
	release, err := LockFile(lock, db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockFile(lock, db); err == nil || !strings.Contains(err.Error(), "another lattice process is already serving the SQLite database "+db) {
		t.Fatalf("second lock: %v", err)
	}
	release()
	release2, err := LockFile(lock, db)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	release2()
}
