package storage

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestBackupSQLite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	url := "sqlite:" + filepath.Join(dir, "live.db")
	db, err := Open(ctx, url, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.WithTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(ctx, `INSERT INTO schema_migrations (version) VALUES (999999)`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "backup.db")
	if err := BackupSQLite(ctx, url, out); err != nil {
		t.Fatal(err)
	}
	copyDB, err := Open(ctx, "sqlite:"+out, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer copyDB.Close()
	var n int
	if err := copyDB.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = 999999`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("row written before the backup: count %d, err %v", n, err)
	}
	// It never overwrites.
	before, _ := os.ReadFile(out)
	if err := BackupSQLite(ctx, url, out); err == nil {
		t.Fatal("a second backup to the same file succeeded")
	}
	if after, _ := os.ReadFile(out); string(after) != string(before) {
		t.Fatal("the existing backup was changed")
	}
	if err := BackupSQLite(ctx, "postgres://x/y", out+"2"); err != ErrNotSQLite {
		t.Fatalf("PostgreSQL URL: %v, want ErrNotSQLite", err)
	}
}
