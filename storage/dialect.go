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
}

var sqliteDialect = dialect{
	name: "sqlite",
	isUniqueViolation: func(err error) bool {
		return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
	},
}

var postgresDialect = dialect{
	name: "postgres",
	isUniqueViolation: func(err error) bool {
		return err != nil && strings.Contains(err.Error(), "SQLSTATE 23505")
	},
	lockEventStream: `SELECT pg_advisory_xact_lock(7345001)`,
}
