package storage

import (
	"errors"
	"strings"
)

// dialect is the short list of real differences between SQLite and PostgreSQL.
// Everything else is written once.
type dialect struct {
	name string
	// rewriteSchema turns a shared migration (written in SQLite's words) into this dialect.
	rewriteSchema func(string) string
	// isUniqueViolation reports whether err is a unique-constraint failure.
	isUniqueViolation func(err error) bool
	// isTransient reports whether err is a write that failed only because of another
	// writer, and would succeed if the transaction ran again (WithTx reports ErrConflict).
	isTransient func(err error) bool
	// lockEventStream, when not empty, serialises the transactions that add room events, so
	// that they commit in the order of their stream positions (event NIDs) even with many
	// writer connections or processes: a reader can then never see NID n+1 before n.
	// SQLite needs nothing: it has a single writer.
	lockEventStream string

	// Full-text search (event_search): SQLite's FTS5 and PostgreSQL's tsvector.
	searchInsert string                // $1 event NID, $2 room NID, $3 key, $4 text
	searchDelete string                // $1 event NID
	searchWhere  string                // the match condition on $1
	searchRank   string                // a relevance score, higher is better
	searchNID    string                // the event NID column
	searchMatch  func([]string) string // the $1 value for the words to find (all of them)

	// insertPushActions inserts the rows of a JSON array of objects {u, r, e, t, h, a, ts}
	// given as $1 into event_push_actions.
	insertPushActions string
	// intList is a subquery of one column listing the integers of a JSON array given as the
	// parameter %s: a list of NIDs as one parameter, where an IN list of one placeholder per
	// value costs SQLite's driver time quadratic in their number to bind.
	intList string
	// tables lists the names of the schema's tables (not the database's own catalog tables).
	tables string
	// resetSerial, when not empty, is a format taking (table, column): a statement that makes
	// the column's sequence continue after the largest value in it, needed after rows were
	// inserted with explicit IDs (Port). SQLite needs nothing: AUTOINCREMENT continues after
	// the largest rowid ever inserted.
	resetSerial string
}

var sqliteDialect = dialect{
	name:          "sqlite",
	rewriteSchema: func(s string) string { return s },
	isUniqueViolation: func(err error) bool {
		return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
	},
	// The writer pool has one connection, but another process (lattice port, a backup) or a
	// busy_timeout that ran out can still leave the database locked.
	isTransient: func(err error) bool {
		return err != nil && (strings.Contains(err.Error(), "SQLITE_BUSY") || strings.Contains(err.Error(), "SQLITE_LOCKED"))
	},
	intList: `SELECT value FROM json_each(%s)`,
	insertPushActions: `INSERT INTO event_push_actions (user_id, room_nid, event_nid, thread_id, highlight, actions, ts)
		SELECT value ->> 'u', value ->> 'r', value ->> 'e', value ->> 't', value ->> 'h', value ->> 'a', value ->> 'ts'
		FROM json_each($1) WHERE TRUE
		ON CONFLICT (user_id, room_nid, event_nid) DO NOTHING`,
	searchInsert: `INSERT INTO event_search (rowid, room_nid, search_key, body) VALUES ($1, $2, $3, $4)`,
	searchDelete: `DELETE FROM event_search WHERE rowid = $1`,
	searchWhere:  `event_search MATCH $1`,
	searchRank:   `(-bm25(event_search))`,
	searchNID:    `rowid`,
	searchMatch: func(words []string) string {
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = `"` + w + `"*`
		}
		return "body : (" + strings.Join(quoted, " AND ") + ")"
	},
	tables: `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\'`,
}

var postgresDialect = dialect{
	name: "postgres",
	rewriteSchema: func(s string) string {
		return strings.ReplaceAll(s, "INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
	},
	isUniqueViolation: func(err error) bool {
		return err != nil && strings.Contains(err.Error(), "SQLSTATE 23505")
	},
	// serialization_failure and deadlock_detected: the transaction lost to another one.
	isTransient: func(err error) bool {
		return err != nil && (strings.Contains(err.Error(), "SQLSTATE 40001") || strings.Contains(err.Error(), "SQLSTATE 40P01"))
	},
	lockEventStream: `SELECT pg_advisory_xact_lock(7345001)`,
	intList:         `SELECT CAST(value AS BIGINT) FROM jsonb_array_elements_text(CAST(%s AS jsonb))`,
	insertPushActions: `INSERT INTO event_push_actions (user_id, room_nid, event_nid, thread_id, highlight, actions, ts)
		SELECT x.u, x.r, x.e, x.t, x.h, x.a, x.ts
		FROM json_to_recordset($1::json) AS x(u TEXT, r BIGINT, e BIGINT, t TEXT, h BOOLEAN, a TEXT, ts BIGINT)
		ON CONFLICT (user_id, room_nid, event_nid) DO NOTHING`,
	searchInsert: `INSERT INTO event_search (event_nid, room_nid, search_key, body, vector)
		VALUES ($1, $2, $3, $4, to_tsvector('simple', $4)) ON CONFLICT (event_nid) DO NOTHING`,
	searchDelete: `DELETE FROM event_search WHERE event_nid = $1`,
	searchWhere:  `vector @@ to_tsquery('simple', $1)`,
	searchRank:   `ts_rank(vector, to_tsquery('simple', $1))`,
	searchNID:    `event_nid`,
	searchMatch: func(words []string) string {
		for i, w := range words {
			words[i] = strings.ToLower(w) + ":*"
		}
		return strings.Join(words, " & ")
	},
	tables: `SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`,
	resetSerial: `SELECT setval(pg_get_serial_sequence('%[1]s', '%[2]s'), COALESCE(MAX(%[2]s), 0) + 1, false) FROM %[1]s`,
}

// InvalidText reports whether err is PostgreSQL refusing text it cannot hold: NUL characters
// or invalid UTF-8 (SQLSTATE 22021, and 22P05 for \u0000 in JSON). SQLite stores such text,
// so callers must not rely on it being refused; the HTTP layer answers 400 for it.
func InvalidText(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		if msg := err.Error(); strings.Contains(msg, "SQLSTATE 22021") || strings.Contains(msg, "SQLSTATE 22P05") {
			return true
		}
	}
	return false
}
