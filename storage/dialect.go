package storage

import "strings"

// dialect is the short list of real differences between SQLite and PostgreSQL.
// Everything else is written once.
type dialect struct {
	name string
	// isUniqueViolation reports whether err is a unique-constraint failure.
	isUniqueViolation func(err error) bool
	// lockEventStream, when not empty, serialises the transactions that add room events, so
	// that they commit in the order of their stream positions (event NIDs) even with many
	// writer connections or processes: a reader can then never see NID n+1 before n.
	// SQLite needs nothing: it has a single writer.
	lockEventStream string
	// tables lists the names of the schema's tables (not the database's own catalog tables).
	tables string
	// resetSerial, when not empty, is a format taking (table, column): a statement that makes
	// the column's sequence continue after the largest value in it, needed after rows were
	// inserted with explicit IDs (Port). SQLite needs nothing: AUTOINCREMENT continues after
	// the largest rowid ever inserted.
	resetSerial string
}

var sqliteDialect = dialect{
	name: "sqlite",
	isUniqueViolation: func(err error) bool {
		return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
	},
	tables: `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\'`,
}

var postgresDialect = dialect{
	name: "postgres",
	isUniqueViolation: func(err error) bool {
		return err != nil && strings.Contains(err.Error(), "SQLSTATE 23505")
	},
	lockEventStream: `SELECT pg_advisory_xact_lock(7345001)`,
	tables: `SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`,
	resetSerial: `SELECT setval(pg_get_serial_sequence('%[1]s', '%[2]s'), COALESCE(MAX(%[2]s), 0) + 1, false) FROM %[1]s`,
}
