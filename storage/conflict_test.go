package storage

import (
	"errors"
	"testing"
)

// TestTransientErrorsAreConflicts: the failures that only mean "another writer got there
// first" come out of WithTx as ErrConflict, so that callers can run the transaction again;
// others do not.
func TestTransientErrorsAreConflicts(t *testing.T) {
	for _, tc := range []struct {
		d    dialect
		msg  string
		want bool
	}{
		{sqliteDialect, "database is locked (5) (SQLITE_BUSY)", true},
		{sqliteDialect, "database table is locked (6) (SQLITE_LOCKED)", true},
		{sqliteDialect, "UNIQUE constraint failed: events.event_id (2067)", false},
		{postgresDialect, "ERROR: could not serialize access due to concurrent update (SQLSTATE 40001)", true},
		{postgresDialect, "ERROR: deadlock detected (SQLSTATE 40P01)", true},
		{postgresDialect, "ERROR: relation does not exist (SQLSTATE 42P01)", false},
	} {
		db := &DB{Q: Q{dialect: tc.d}}
		err := db.conflict(errors.New(tc.msg))
		if got := errors.Is(err, ErrConflict); got != tc.want {
			t.Errorf("%s: %q is a conflict: %v, want %v", tc.d.name, tc.msg, got, tc.want)
		}
	}
}
