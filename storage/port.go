package storage

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
)

// portTable is one table Port copies.
type portTable struct {
	name string
	// key is the primary key: rows are copied in its order.
	key string
	// serial is the column filled by a sequence (BIGSERIAL, AUTOINCREMENT), or "". Its
	// sequence is moved past the copied IDs so that new rows do not collide with them.
	serial string
	// seeded, when not empty, matches the rows the migrations insert into a new database:
	// they do not make the target "not empty", and copied rows replace them.
	seeded string
}

// portTables lists every table of the schema in the order Port copies them: accounts and
// their devices first (with what they own: account data, media), then rooms and what refers
// to them. A test fails when a migration adds a table that is neither here nor in
// portSkipped, so no table can be left out of a port.
var portTables = []portTable{
	{name: "accounts", key: "user_id"},
	{name: "profiles", key: "user_id"},
	{name: "devices", key: "user_id, device_id"},
	{name: "user_threepids", key: "medium, address"},
	{name: "user_external_ids", key: "auth_provider, external_id"},
	{name: "ratelimit_overrides", key: "user_id"},
	{name: "puppet_tokens", key: "token_hash"},
	{name: "login_tokens", key: "token_hash"},
	{name: "uia_sso_completions", key: "session_id"},
	{name: "uia_sessions", key: "session_id"},
	{name: "filters", key: "filter_id", serial: "filter_id"},
	{name: "streams", key: "name", seeded: "pos = 0"},
	{name: "account_data", key: "user_id, room_id, data_type"},
	{name: "media", key: "server_name, media_id"},
	{name: "media_thumbnails", key: "server_name, media_id, width, height, method"},
	{name: "remote_media", key: "server_name, media_id"},
	{name: "rooms", key: "room_nid", serial: "room_nid"},
	{name: "room_aliases", key: "alias"},
	{name: "state_keys", key: "state_key_nid", serial: "state_key_nid"},
	{name: "events", key: "event_nid", serial: "event_nid"},
	{name: "forward_extremities", key: "room_nid, event_nid"},
	{name: "state_snapshots", key: "snapshot_nid", serial: "snapshot_nid"},
	{name: "state_snapshot_entries", key: "snapshot_nid, state_key_nid"},
	{name: "current_state", key: "room_nid, state_key_nid"},
	{name: "memberships", key: "room_nid, user_id"},
	{name: "txn_ids", key: "user_id, device_id, room_nid, txn_id"},
	{name: "receipts", key: "room_nid, user_id, receipt_type, thread_id"},
	{name: "presence", key: "user_id"},
	{name: "device_keys", key: "user_id, device_id"},
	{name: "one_time_keys", key: "user_id, device_id, algorithm, key_id"},
	{name: "fallback_keys", key: "user_id, device_id, algorithm"},
	{name: "cross_signing_keys", key: "user_id, key_type"},
	{name: "key_signatures", key: "target_user_id, target_key_id, signer_user_id, signer_key_id"},
	{name: "device_list_changes", key: "user_id"},
	{name: "to_device_messages", key: "user_id, device_id, stream_pos"},
	{name: "to_device_txns", key: "user_id, device_id, txn_id"},
	{name: "key_backup_versions", key: "user_id, version"},
	{name: "key_backup_sessions", key: "user_id, version, room_id, session_id"},
	{name: "event_relations", key: "event_nid"},
	{name: "reports", key: "report_id", serial: "report_id"},
	{name: "event_push_actions", key: "user_id, room_nid, event_nid"},
	{name: "event_push_shared", key: "room_nid, event_nid"},
	{name: "event_push_apart", key: "user_id, room_nid, event_nid"},
	{name: "push_spans", key: "user_id, room_nid, from_nid"},
	{name: "pushers", key: "user_id, app_id, pushkey"},
	{name: "server_keys", key: "server_name, key_id"},
	{name: "federation_queue_pdus", key: "queue_pos", serial: "queue_pos"},
	{name: "federation_queue_edus", key: "queue_pos", serial: "queue_pos"},
	{name: "federation_destinations", key: "destination"},
	{name: "blocked_rooms", key: "room_id"},
	{name: "room_deletes", key: "delete_id"},
	{name: "registration_tokens", key: "token"},
	{name: "server_notice_rooms", key: "user_id"},
	{name: "server_notice_txns", key: "admin_id, txn_id"},
	{name: "purge_history", key: "purge_id"},
	{name: "appservice_positions", key: "service_id"},
	{name: "appservice_txns", key: "service_id, txn_id"},
	{name: "appservice_room_directory", key: "service_id, network_id, room_nid"},
	{name: "sliding_sync_connections", key: "user_id, device_id, conn_id"},
	{name: "sliding_sync_rooms", key: "user_id, device_id, conn_id, room_id"},
	{name: "thread_subscriptions", key: "user_id, room_id, thread_root"},
	{name: "openid_tokens", key: "token_hash"},
	{name: "delayed_events", key: "delay_id"},
	{name: "purged_room_leaves", key: "user_id, room_id"},
	{name: "sticky_events", key: "event_nid"},
	{name: "partial_state_rooms", key: "room_nid"},
	{name: "email_sessions", key: "sid"},
	{name: "oauth_clients", key: "client_id"},
	{name: "oauth_grants", key: "grant_hash"},
}

// portSkipped lists the tables Port leaves alone: Open fills schema_migrations and
// cache_generations in the target,
// and the full-text index is kept differently by each backend (FTS5 and its shadow tables in
// SQLite, a tsvector in PostgreSQL), so Port rebuilds it from the events instead.
var portSkipped = []string{
	"schema_migrations", "cache_generations",
	"event_search", "event_search_data", "event_search_idx", "event_search_content",
	"event_search_docsize", "event_search_config",
}

// A batch of copied rows is inserted in one statement and one transaction; it ends at
// portBatchRows rows or about portBatchBytes of values, whichever comes first.
const (
	portBatchRows  = 1000
	portBatchBytes = 4 << 20
)

// Port copies every row of from into to, which must be empty: a database that Open has just
// created. Primary keys and numeric IDs are kept (an event NID is also a stream position,
// so clients' since-tokens stay valid), stream positions are copied, and sequences continue
// after the copied IDs. from is read in one read-only transaction, a consistent snapshot; the
// deployment should be stopped all the same, since later writes would not be ported.
// progress, when not nil, is called as each table starts and after each batch. At the end
// Port counts the rows of every table on both sides and fails if they differ.
func Port(ctx context.Context, from, to *DB, progress func(table string, done, total int64)) error {
	if progress == nil {
		progress = func(string, int64, int64) {}
	}
	for _, db := range []*DB{from, to} {
		if err := checkPortTables(ctx, db); err != nil {
			return err
		}
	}
	if err := checkEmpty(ctx, to); err != nil {
		return err
	}
	// SQLite ignores the isolation level: a deferred read transaction in WAL mode is already
	// a snapshot, taken at its first read.
	src, err := from.reader.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("port: begin reading source: %w", err)
	}
	defer func() { _ = src.Rollback() }()
	totals := make(map[string]int64, len(portTables))
	for _, t := range portTables {
		var total int64
		if err := src.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+t.name).Scan(&total); err != nil {
			return fmt.Errorf("port: count %s: %w", t.name, err)
		}
		progress(t.name, 0, total)
		done, err := copyTable(ctx, src, to, t, func(done int64) { progress(t.name, done, total) })
		if err != nil {
			return fmt.Errorf("port: copy %s: %w", t.name, err)
		}
		if done != total {
			return fmt.Errorf("port: copy %s: read %d rows, counted %d", t.name, done, total)
		}
		totals[t.name] = total
	}
	if err := resetSerials(ctx, to); err != nil {
		return err
	}
	if err := verifyCounts(ctx, to, totals); err != nil {
		return err
	}
	if err := to.RebuildSearchIndex(ctx); err != nil {
		return fmt.Errorf("port: rebuild search index: %w", err)
	}
	return nil
}

// checkPortTables fails if db has a table that portTables does not list.
func checkPortTables(ctx context.Context, db *DB) error {
	names, err := db.strings(ctx, db.dialect.tables)
	if err != nil {
		return fmt.Errorf("port: list tables: %w", err)
	}
	for _, name := range names {
		if !slices.Contains(portSkipped, name) && !slices.ContainsFunc(portTables, func(t portTable) bool { return t.name == name }) {
			return fmt.Errorf("port: table %s is not in storage.portTables; add it there", name)
		}
	}
	return nil
}

// checkEmpty fails if any table of to has a row that the migrations did not put there.
func checkEmpty(ctx context.Context, to *DB) error {
	for _, t := range portTables {
		query := `SELECT COUNT(*) FROM ` + t.name
		if t.seeded != "" {
			query += ` WHERE NOT (` + t.seeded + `)`
		}
		var n int64
		if err := to.queryRow(ctx, query).Scan(&n); err != nil {
			return fmt.Errorf("port: count %s in target: %w", t.name, err)
		}
		if n > 0 {
			return fmt.Errorf("port: target database is not empty (%s: %d row(s)); port into a new, empty database", t.name, n)
		}
	}
	return nil
}

// copyTable copies the rows of t from src to to in batches, calling progress with the number
// of rows copied so far after each batch, and returns that number.
func copyTable(ctx context.Context, src *sql.Tx, to *DB, t portTable, progress func(done int64)) (int64, error) {
	cols, err := portColumns(ctx, src, to, t.name)
	if err != nil {
		return 0, err
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	rows, err := src.QueryContext(ctx, `SELECT `+strings.Join(names, ", ")+` FROM `+t.name+` ORDER BY `+t.key)
	if err != nil {
		return 0, fmt.Errorf("select: %w", err)
	}
	defer rows.Close()
	var batch []any
	var done, size int64
	n := 0
	flush := func() error {
		if n == 0 {
			return nil
		}
		err := to.WithTx(ctx, func(tx *Tx) error {
			_, err := tx.exec(ctx, insertSQL(t, names, n), batch...)
			return err
		})
		if err != nil {
			return fmt.Errorf("insert rows %d to %d: %w", done+1, done+int64(n), err)
		}
		done += int64(n)
		progress(done)
		batch, n, size = batch[:0], 0, 0
		return nil
	}
	row := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range row {
		ptrs[i] = &row[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return done, fmt.Errorf("scan: %w", err)
		}
		for i, v := range row {
			v = portValue(v, cols[i].targetType)
			batch = append(batch, v)
			size += valueSize(v)
		}
		if n++; n == portBatchRows || size >= portBatchBytes {
			if err := flush(); err != nil {
				return done, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return done, fmt.Errorf("read: %w", err)
	}
	return done, flush()
}

// portColumn is a column of a ported table and its type in the target database.
type portColumn struct {
	name       string
	targetType string
}

// portColumns returns the columns of table, failing unless source and target have the same:
// a migration that differs between the two dialects would otherwise lose data.
func portColumns(ctx context.Context, src *sql.Tx, to *DB, table string) ([]portColumn, error) {
	rows, err := src.QueryContext(ctx, `SELECT * FROM `+table+` WHERE 1 = 0`)
	if err != nil {
		return nil, fmt.Errorf("source columns: %w", err)
	}
	names, err := rows.Columns()
	rows.Close()
	if err != nil {
		return nil, fmt.Errorf("source columns: %w", err)
	}
	rows, err = to.query(ctx, `SELECT * FROM `+table+` WHERE 1 = 0`)
	if err != nil {
		return nil, fmt.Errorf("target columns: %w", err)
	}
	types, err := rows.ColumnTypes()
	rows.Close()
	if err != nil {
		return nil, fmt.Errorf("target columns: %w", err)
	}
	targetTypes := make(map[string]string, len(types))
	for _, ct := range types {
		targetTypes[ct.Name()] = strings.ToUpper(ct.DatabaseTypeName())
	}
	cols := make([]portColumn, 0, len(names))
	for _, name := range names {
		typ, ok := targetTypes[name]
		if !ok {
			return nil, fmt.Errorf("column %s is missing in the target", name)
		}
		cols = append(cols, portColumn{name: name, targetType: typ})
	}
	if len(cols) != len(types) {
		return nil, fmt.Errorf("the target has %d columns, the source %d", len(types), len(cols))
	}
	return cols, nil
}

// portValue converts a value read from the source into one the target column accepts:
// SQLite has no boolean type and returns 0 or 1, and returns []byte for a text value that
// was written as a BLOB.
func portValue(v any, targetType string) any {
	switch x := v.(type) {
	case int64:
		if targetType == "BOOL" || targetType == "BOOLEAN" {
			return x != 0
		}
	case []byte:
		if targetType == "TEXT" || strings.Contains(targetType, "CHAR") {
			return string(x)
		}
	}
	return v
}

// valueSize estimates the bytes v takes in a batch.
func valueSize(v any) int64 {
	switch x := v.(type) {
	case string:
		return int64(len(x))
	case []byte:
		return int64(len(x))
	}
	return 8
}

// insertSQL returns an INSERT of n rows into t. A seeded table replaces the rows the
// migrations put there.
func insertSQL(t portTable, cols []string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "INSERT INTO %s (%s) VALUES ", t.name, strings.Join(cols, ", "))
	arg := 1
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for j := range cols {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "$%d", arg)
			arg++
		}
		b.WriteByte(')')
	}
	if t.seeded != "" {
		key := strings.Split(t.key, ", ")
		var set []string
		for _, c := range cols {
			if !slices.Contains(key, c) {
				set = append(set, c+" = EXCLUDED."+c)
			}
		}
		fmt.Fprintf(&b, " ON CONFLICT (%s) DO UPDATE SET %s", t.key, strings.Join(set, ", "))
	}
	return b.String()
}

// resetSerials makes every sequence of to continue after the largest copied ID.
func resetSerials(ctx context.Context, to *DB) error {
	if to.dialect.resetSerial == "" {
		return nil
	}
	return to.WithTx(ctx, func(tx *Tx) error {
		for _, t := range portTables {
			if t.serial == "" {
				continue
			}
			if _, err := tx.exec(ctx, fmt.Sprintf(to.dialect.resetSerial, t.name, t.serial)); err != nil {
				return fmt.Errorf("port: reset sequence of %s.%s: %w", t.name, t.serial, err)
			}
		}
		return nil
	})
}

// verifyCounts fails unless every table of to has as many rows as the source had.
func verifyCounts(ctx context.Context, to *DB, want map[string]int64) error {
	for _, t := range portTables {
		var n int64
		if err := to.queryRow(ctx, `SELECT COUNT(*) FROM `+t.name).Scan(&n); err != nil {
			return fmt.Errorf("port: verify %s: %w", t.name, err)
		}
		if n != want[t.name] {
			return fmt.Errorf("port: verify %s: the target has %d rows, the source %d", t.name, n, want[t.name])
		}
	}
	return nil
}
