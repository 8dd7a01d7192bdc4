package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrNotSQLite is returned by BackupSQLite for a PostgreSQL URL: pg_dump backs those up.
var ErrNotSQLite = errors.New("not an SQLite database")

// BackupSQLite writes a consistent copy of the SQLite database at url ("sqlite:PATH") to the
// new file out with VACUUM INTO, which reads one snapshot of the database: the server may go
// on writing meanwhile (WAL mode), and the copy holds every transaction committed before it
// began and none after. It refuses to overwrite out. The database is opened read-only and no
// migration runs.
func BackupSQLite(ctx context.Context, url, out string) error {
	path, ok := strings.CutPrefix(url, "sqlite:")
	if !ok {
		return ErrNotSQLite
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("database %s: %w", path, err)
	}
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("%s exists: not overwriting it", out)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `VACUUM INTO $1`, out); err != nil {
		return fmt.Errorf("vacuum into %s: %w", out, err)
	}
	return nil
}
