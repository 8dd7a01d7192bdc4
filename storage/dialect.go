package storage

import "strings"

// dialect is the short list of real differences between SQLite and PostgreSQL.
// Everything else is written once.
type dialect struct {
	name string
	// isUniqueViolation reports whether err is a unique-constraint failure.
	isUniqueViolation func(err error) bool
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
}
