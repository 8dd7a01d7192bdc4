// Package storage is the only package that knows SQL. It serves both SQLite (modernc.org/sqlite,
// the embedded default) and PostgreSQL (pgx) with one set of queries; dialect.go lists the few
// real differences. It imports no other Lattice package.
package storage

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver "pgx"
	_ "modernc.org/sqlite"             // SQLite driver "sqlite"
)

// ErrNotFound is returned when a row does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a unique row already exists, and by WithTx when the
// transaction failed only because of a concurrent writer (a PostgreSQL serialization failure
// or deadlock, a locked SQLite database): running it again may succeed.
var ErrConflict = errors.New("conflict")

//go:embed migrations
var migrationsFS embed.FS

type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Q carries the queries that work both inside and outside a write transaction.
type Q struct {
	q       querier
	dialect dialect
	obs     *atomic.Pointer[Observer] // the DB's observer, shared by its transactions
}

func (q *Q) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	defer q.timed("exec", time.Now())
	return q.q.ExecContext(ctx, query, args...)
}

func (q *Q) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	defer q.timed("query", time.Now())
	return q.q.QueryContext(ctx, query, args...)
}

func (q *Q) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	defer q.timed("query_row", time.Now())
	return q.q.QueryRowContext(ctx, query, args...)
}

// timed tells the observer, if any, how long the statement op started at start took.
func (q *Q) timed(op string, start time.Time) {
	if q.obs == nil {
		return
	}
	if o := q.obs.Load(); o != nil {
		(*o).QueryDone(op, time.Since(start))
	}
}

// Observer receives the database's measurements (the metrics, in production). Its methods
// are called on the hot path and must be cheap and not block.
type Observer interface {
	// QueryDone reports a statement's time until its result or first row; op is query,
	// query_row, exec or commit.
	QueryDone(op string, d time.Duration)
	// EventsCommitted reports the senders of the room events a transaction committed.
	EventsCommitted(senders []string)
}

// SetObserver has o told about every statement and committed event from now on.
func (db *DB) SetObserver(o Observer) { db.obs.Store(&o) }

// PoolStats returns the connection pools' statistics by name: "writer" and "reader" for
// SQLite, "main" for PostgreSQL (one pool).
func (db *DB) PoolStats() map[string]sql.DBStats {
	if db.reader == db.writer {
		return map[string]sql.DBStats{"main": db.writer.Stats()}
	}
	return map[string]sql.DBStats{"writer": db.writer.Stats(), "reader": db.reader.Stats()}
}

// Ping checks that the database answers a round trip: a query on the reader pool.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	return db.reader.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
}

// Tx is a write transaction.
type Tx struct {
	Q
	tx *sql.Tx

	// senders are those of the room events inserted, for the observer after the commit;
	// only kept when there is an observer.
	senders []string

	// What the transaction wrote of the cached data; bumpGenerations invalidates those caches.
	devicesChanged     bool // a device or its token: the token and key counts caches
	keysChanged        bool // one-time or fallback keys: the key counts cache
	membershipsChanged bool // memberships: the memberships cache
	// notificationsDeleted: push actions went that may be unread (a purge), which moves the
	// generation NotificationsGeneration reports.
	notificationsDeleted bool
	// overridesChanged, purgedLeavesAdded, stickyAdded, pushersSet: rows that the caches of
	// featurecache.go answer from.
	overridesChanged, purgedLeavesAdded, stickyAdded, pushersSet bool
	generationsMoved                                             bool // bumpGenerations moved some
}

// DB is the database. Its embedded Q reads from the reader pool.
type DB struct {
	Q
	writer *sql.DB
	reader *sql.DB
	// writerStmts and readerStmts are the pools' prepared statements (stmtcache.go); nil on
	// PostgreSQL, whose driver keeps its own.
	writerStmts *stmtCache
	readerStmts *stmtCache
	obs         *atomic.Pointer[Observer]
	tokens      readCache[string, Device]        // access-token hash -> device
	keyCounts   readCache[[2]string, deviceKeys] // (user, device) -> key counts, for /sync
	memberships readCache[string, []Membership]  // user -> every membership, for /sync
	roomJoined  readCache[int64, *joinedSet]     // room -> joined members, for presence (peers.go)
	unreadGen   readCache[struct{}, struct{}]    // only its generation: NotificationsGeneration
	// Reads that nearly always find nothing (featurecache.go).
	overrides    readCache[string, overrideEntry] // user -> message rate limit override
	purgedLeaves readCache[struct{}, int64]       // the latest stream position of a purged room leave
	stickyUntil  readCache[int64, int64]          // room -> latest expiry of its sticky events
	httpPushers  readCache[struct{}, bool]        // whether any user has an HTTP pusher
	seen         lastSeen                         // devices' last sightings, written behind (lastseen.go)
	sideState                                     // session connections for package cluster (cluster.go)
	genMoved     atomic.Pointer[func()]           // SetGenerationsMoved
}

// Open connects to url ("sqlite:PATH" or "postgres://...") and applies pending migrations.
func Open(ctx context.Context, url string, maxConns int) (*DB, error) {
	db := DB{
		obs:          &atomic.Pointer[Observer]{},
		tokens:       readCache[string, Device]{name: "devices", max: 100000},
		keyCounts:    readCache[[2]string, deviceKeys]{name: "device_keys", max: 100000},
		memberships:  readCache[string, []Membership]{name: "memberships", max: 100000},
		roomJoined:   readCache[int64, *joinedSet]{name: "memberships", max: 10000},
		unreadGen:    readCache[struct{}, struct{}]{name: "push_actions", max: 1},
		overrides:    readCache[string, overrideEntry]{name: "ratelimit_overrides", max: 100000},
		purgedLeaves: readCache[struct{}, int64]{name: "purged_room_leaves", max: 1},
		stickyUntil:  readCache[int64, int64]{name: "sticky_events", max: 100000},
		httpPushers:  readCache[struct{}, bool]{name: "pushers", max: 1},
		sideState:    sideState{url: url, maxConns: maxConns},
	}
	var err error
	if path, ok := strings.CutPrefix(url, "sqlite:"); ok {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		db.dialect = sqliteDialect
		// One writer connection: SQLite allows one writer at a time, so two writers can never
		// race; BEGIN IMMEDIATE takes the write lock up front instead of failing at commit.
		// synchronous(FULL) makes every commit durable before it is acknowledged.
		base := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)"
		if db.writer, err = sql.Open("sqlite", base+"&_txlock=immediate"); err != nil {
			return nil, err
		}
		db.writer.SetMaxOpenConns(1)
		db.writer.SetMaxIdleConns(1)
		if db.reader, err = sql.Open("sqlite", base+"&_pragma=query_only(1)"); err != nil {
			return nil, err
		}
		db.reader.SetMaxOpenConns(maxConns)
		// Keep every reader open: opening a connection runs the pragmas again.
		db.reader.SetMaxIdleConns(maxConns)
		db.writerStmts, db.readerStmts = newStmtCache(db.writer), newStmtCache(db.reader)
	} else {
		db.dialect = postgresDialect
		if db.writer, err = sql.Open("pgx", url); err != nil {
			return nil, err
		}
		db.writer.SetMaxOpenConns(maxConns)
		db.writer.SetMaxIdleConns(maxConns)
		db.reader = db.writer
	}
	db.q = db.reader
	if db.readerStmts != nil {
		db.q = cachedDB{db: db.reader, cache: db.readerStmts}
	}
	db.Q.obs = db.obs
	if err := db.writer.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return &db, nil
}

// Close closes both pools.
func (db *DB) Close() error {
	db.seen.wg.Wait() // the last sightings are written first
	if db.writerStmts != nil {
		db.writerStmts.close()
		db.readerStmts.close()
	}
	err := db.writer.Close()
	if db.side != nil {
		err = errors.Join(err, db.side.Close())
	}
	if db.reader != db.writer {
		err = errors.Join(err, db.reader.Close())
	}
	return err
}

// WithTx runs fn in a write transaction, committing when fn returns nil.
func (db *DB) WithTx(ctx context.Context, fn func(tx *Tx) error) error {
	sqlTx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return db.conflict(fmt.Errorf("begin: %w", err)) // BEGIN IMMEDIATE on a locked SQLite
	}
	tx := &Tx{Q: Q{q: sqlTx, dialect: db.dialect, obs: db.obs}, tx: sqlTx}
	// ctq.done runs after the commit or rollback, once the writer connection is free again
	// (not deferred: a panic in fn leaves the transaction holding it).
	var ctq *cachedTx
	if db.writerStmts != nil {
		ctq = newCachedTx(sqlTx, db.writerStmts)
		tx.q = ctq
	}
	if err := fn(tx); err != nil {
		_ = sqlTx.Rollback()
		ctq.done(ctx)
		return db.conflict(err)
	}
	if err := tx.bumpGenerations(ctx); err != nil {
		_ = sqlTx.Rollback()
		ctq.done(ctx)
		return db.conflict(err)
	}
	start := time.Now()
	err = sqlTx.Commit()
	if o := db.obs.Load(); o != nil {
		(*o).QueryDone("commit", time.Since(start))
		if err == nil && len(tx.senders) > 0 {
			(*o).EventsCommitted(tx.senders)
		}
	}
	// Dropped whether or not the commit went through: a failed commit may still have landed.
	if tx.devicesChanged {
		db.tokens.invalidate()
	}
	if tx.keysChanged || tx.devicesChanged {
		db.keyCounts.invalidate()
	}
	if tx.membershipsChanged {
		db.memberships.invalidate()
		db.roomJoined.invalidate()
	}
	if tx.notificationsDeleted {
		db.unreadGen.invalidate()
	}
	if tx.overridesChanged {
		db.overrides.invalidate()
	}
	if tx.purgedLeavesAdded {
		db.purgedLeaves.invalidate()
	}
	if tx.stickyAdded {
		db.stickyUntil.invalidate()
	}
	if tx.pushersSet {
		db.httpPushers.invalidate()
	}
	ctq.done(ctx) // after the caches' invalidation: it may wait for the writer connection
	if err != nil {
		return db.conflict(fmt.Errorf("commit: %w", err))
	}
	if tx.generationsMoved {
		if fn := db.genMoved.Load(); fn != nil {
			(*fn)()
		}
	}
	return nil
}

// conflict marks err with ErrConflict when it is a transient failure of the dialect.
func (db *DB) conflict(err error) error {
	if db.dialect.isTransient(err) && !errors.Is(err, ErrConflict) {
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return err
}

// migrate applies the migrations the database has not had yet, in version order, each in
// its own transaction. A migration is written once, NNNN_name.sql, for both databases; the
// only rewrite is SQLite's "INTEGER PRIMARY KEY AUTOINCREMENT" into PostgreSQL's "BIGSERIAL
// PRIMARY KEY". Where the dialects really differ the migration comes as a pair,
// NNNN_name.sqlite.sql and NNNN_name.postgres.sql.
func (db *DB) migrate(ctx context.Context) error {
	if db.dialect.name == "postgres" {
		// Processes of a cluster started together migrate one after another: the first
		// applies what is new, the others find it applied (two at once collide creating the
		// same tables). The lock is held on a connection of its own, outside the pool the
		// migrations run on (which may have a single connection, as the admin commands').
		locker, err := sql.Open("pgx", db.url)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		defer locker.Close()
		conn, err := locker.Conn(ctx)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, migrateLockKey); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrateLockKey) //nolint:errcheck // the session's end releases it too
	}
	if _, err := db.writer.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	ms, err := migrationsFor(db.dialect)
	if err != nil {
		return err
	}
	for _, m := range ms {
		err = db.WithTx(ctx, func(tx *Tx) error {
			var n int
			if err := tx.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, m.version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			for _, stmt := range strings.Split(m.body, ";\n") {
				if strings.TrimSpace(stripComments(stmt)) == "" {
					continue
				}
				if _, err := tx.q.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("%s: %w", m.name, err)
				}
			}
			_, err := tx.q.ExecContext(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, m.version)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	return nil
}

type migration struct {
	version int64
	name    string
	body    string
}

// migrationsFor returns the migrations of a dialect in version order, checking that every
// version has either one shared file or a file for each dialect.
func migrationsFor(d dialect) ([]migration, error) {
	entries, err := fs.ReadDir(migrationsFS, "migrations")
	if err != nil {
		return nil, err
	}
	byVersion := map[int64][]string{}
	for _, e := range entries {
		var version int64
		if _, err := fmt.Sscanf(e.Name(), "%04d_", &version); err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration %s: bad name", e.Name())
		}
		byVersion[version] = append(byVersion[version], e.Name())
	}
	var out []migration
	for version, names := range byVersion {
		var name string
		for _, n := range names {
			switch {
			case strings.HasSuffix(n, "."+d.name+".sql"):
				name = n
			case strings.HasSuffix(n, ".sqlite.sql"), strings.HasSuffix(n, ".postgres.sql"):
			case len(names) == 1:
				name = n
			}
		}
		if name == "" || (len(names) != 1 && len(names) != 2) {
			return nil, fmt.Errorf("migration %04d: want one shared file or one per database, have %v", version, names)
		}
		body, err := fs.ReadFile(migrationsFS, "migrations/"+name)
		if err != nil {
			return nil, err
		}
		text := string(body)
		if !strings.Contains(name, "."+d.name+".") {
			text = d.rewriteSchema(text)
		}
		out = append(out, migration{version: version, name: name, body: text})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

func stripComments(stmt string) string {
	var b strings.Builder
	for _, line := range strings.Split(stmt, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// nextStreamPos advances the named stream and returns its new position.
func (tx *Tx) nextStreamPos(ctx context.Context, name string) (int64, error) {
	var pos int64
	err := tx.q.QueryRowContext(ctx, `UPDATE streams SET pos = pos + 1 WHERE name = $1 RETURNING pos`, name).Scan(&pos)
	if err != nil {
		return 0, fmt.Errorf("advance stream %s: %w", name, err)
	}
	return pos, nil
}

// StreamPos returns the current position of the named stream.
func (q *Q) StreamPos(ctx context.Context, name string) (int64, error) {
	var pos int64
	err := q.q.QueryRowContext(ctx, `SELECT pos FROM streams WHERE name = $1`, name).Scan(&pos)
	if err != nil {
		return 0, fmt.Errorf("select stream %s: %w", name, err)
	}
	return pos, nil
}
