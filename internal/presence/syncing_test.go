package presence

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/lattice-chat/lattice/storage"
)

// TestSyncingSurvivesFailedWrite: /sync is a read; when the presence it would set cannot be
// written (a full disk, here a trigger that fails every write of the table) the sync goes on
// and the user still counts as syncing, rather than the request failing.
func TestSyncingSurvivesFailedWrite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	db, err := storage.Open(ctx, "sqlite:"+path, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, stmt := range []string{
		`CREATE TRIGGER presence_full_insert BEFORE INSERT ON presence BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END`,
		`CREATE TRIGGER presence_full_update BEFORE UPDATE ON presence BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END`,
	} {
		if _, err := raw.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	h := newHarness(t, db)
	done := h.s.Syncing(ctx, "@a:x", "")
	if len(h.waker.positions) != 0 {
		t.Errorf("%d wakes for a presence change that was not stored", len(h.waker.positions))
	}
	done()
	if len(h.armed(h.s.cfg.OfflineAfter)) != 1 {
		t.Errorf("the end of the sync armed %d offline timers, want 1", len(h.armed(h.s.cfg.OfflineAfter)))
	}
}
