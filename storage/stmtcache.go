package storage

import (
	"container/list"
	"context"
	"database/sql"
	"strings"
	"sync"
)

// Prepared statements, kept per query text.
//
// SQLite's driver (modernc.org/sqlite) compiles the text of every query it is given unless it
// comes as a prepared statement, and compiling is a large part of a short query's cost (a fifth
// to a third of the server's CPU under the send and sync benchmarks). So on SQLite every query
// of Q goes through a *sql.Stmt kept per text: database/sql prepares it once per connection and
// the driver reuses the compiled statement (reset between runs). PostgreSQL needs none of
// this: pgx already prepares each text once per connection and keeps it (its own statement
// cache), so a PostgreSQL Q runs the text as it is.
//
// Rules that keep it correct:
//   - A text is prepared once it has been run a second time, so one-off texts (migrations,
//     rare administration queries) are never kept; at most stmtCacheMax texts are kept, the
//     least recently used one going first.
//   - A statement taken out of the cache by eviction is closed only when no call that uses
//     it is in flight (refs); Rows that outlive the call keep their own hold on it in
//     database/sql, which closes it only when they are closed.
//   - A transaction never prepares on the database: SQLite's writer pool has one connection,
//     which the transaction holds, so preparing there would wait for ever. It uses the
//     database's statement through tx.StmtContext (the same compiled statement, as the
//     transaction runs on the connection it was prepared on) when there is one, and otherwise
//     runs the text and leaves it to be prepared after the transaction ends.
//   - The driver has one compiled statement per (connection, text), reset at every run, so two
//     result sets of one text may not be open at once on one connection. Outside a
//     transaction each query has a connection of its own; inside one, a text whose last rows
//     are still open is run unprepared.

// stmtCacheMax bounds the texts kept per pool; each is compiled on every connection that ran it.
const stmtCacheMax = 512

// Texts built with a list of placeholders (an IN list of 1 to 500 values) are a text per
// length, each compiled on each connection (tens of KB each): kept, they would take hundreds
// of MB and push the fixed texts out. Only texts of at most maxCachedParams placeholders and
// maxCachedText bytes are kept.
const (
	maxCachedParams = 16
	maxCachedText   = 2048
)

// cacheable reports whether text may be kept prepared.
func cacheable(text string) bool {
	return len(text) <= maxCachedText && strings.Count(text, "$") <= maxCachedParams
}

// stmtCache is the prepared statements of one pool.
type stmtCache struct {
	db  *sql.DB
	max int // texts kept: stmtCacheMax

	mu      sync.Mutex
	entries map[string]*list.Element // text -> element of lru holding a *cachedStmt
	lru     list.List                // front: most recently used
	seen    map[string]struct{}      // texts run once, not prepared yet
}

type cachedStmt struct {
	text    string
	stmt    *sql.Stmt
	refs    int  // calls in flight using stmt
	evicted bool // out of the cache: close once refs is 0
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, max: stmtCacheMax, entries: map[string]*list.Element{}, seen: map[string]struct{}{}}
}

// lookup returns the statement of text with a hold on it (release it), or nil; when there is
// none it notes that text was run and reports whether it had been run before.
func (c *stmtCache) lookup(text string) (s *cachedStmt, again bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[text]; ok {
		c.lru.MoveToFront(el)
		s = el.Value.(*cachedStmt)
		s.refs++
		return s, true
	}
	if !cacheable(text) {
		return nil, false
	}
	if _, ok := c.seen[text]; ok {
		return nil, true
	}
	if len(c.seen) >= 4*c.max {
		clear(c.seen) // texts built on the fly must not grow it for ever
	}
	c.seen[text] = struct{}{}
	return nil, false
}

// acquire returns the statement of text with a hold on it, preparing it when text is run for
// at least the second time; nil means run the text as it is.
func (c *stmtCache) acquire(ctx context.Context, text string) *cachedStmt {
	s, again := c.lookup(text)
	if s != nil || !again {
		return s
	}
	stmt, err := c.db.PrepareContext(ctx, text)
	if err != nil {
		return nil // the query itself will report the error
	}
	return c.add(text, stmt, true)
}

// add keeps stmt as the statement of text, unless another was kept meanwhile (then stmt is
// closed), and returns the one kept, with a hold on it when hold is set.
func (c *stmtCache) add(text string, stmt *sql.Stmt, hold bool) *cachedStmt {
	var toClose []*sql.Stmt
	c.mu.Lock()
	el, ok := c.entries[text]
	if ok {
		toClose = append(toClose, stmt)
		c.lru.MoveToFront(el)
	} else {
		delete(c.seen, text)
		el = c.lru.PushFront(&cachedStmt{text: text, stmt: stmt})
		c.entries[text] = el
		for c.lru.Len() > c.max {
			old := c.lru.Remove(c.lru.Back()).(*cachedStmt)
			delete(c.entries, old.text)
			old.evicted = true
			if old.refs == 0 {
				toClose = append(toClose, old.stmt)
			}
		}
	}
	s := el.Value.(*cachedStmt)
	if hold {
		s.refs++
	}
	c.mu.Unlock()
	for _, st := range toClose {
		_ = st.Close()
	}
	return s
}

// release drops a hold taken by lookup or acquire.
func (c *stmtCache) release(s *cachedStmt) {
	c.mu.Lock()
	s.refs--
	closeIt := s.evicted && s.refs == 0
	c.mu.Unlock()
	if closeIt {
		_ = s.stmt.Close()
	}
}

// prepareLater prepares texts that a transaction ran unprepared, now that it is over.
func (c *stmtCache) prepareLater(ctx context.Context, texts []string) {
	for _, text := range texts {
		c.mu.Lock()
		_, ok := c.entries[text]
		c.mu.Unlock()
		if ok {
			continue
		}
		stmt, err := c.db.PrepareContext(context.WithoutCancel(ctx), text)
		if err != nil {
			continue
		}
		c.add(text, stmt, false)
	}
}

// close closes every kept statement; the pool is closing.
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for el := c.lru.Front(); el != nil; el = el.Next() {
		_ = el.Value.(*cachedStmt).stmt.Close()
	}
	c.lru.Init()
	clear(c.entries)
}

// cachedDB is the querier of a pool whose queries go through its statement cache.
type cachedDB struct {
	db    *sql.DB
	cache *stmtCache
}

func (d cachedDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if s := d.cache.acquire(ctx, query); s != nil {
		defer d.cache.release(s)
		return s.stmt.ExecContext(ctx, args...)
	}
	return d.db.ExecContext(ctx, query, args...)
}

func (d cachedDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s := d.cache.acquire(ctx, query); s != nil {
		defer d.cache.release(s)
		return s.stmt.QueryContext(ctx, args...)
	}
	return d.db.QueryContext(ctx, query, args...)
}

func (d cachedDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if s := d.cache.acquire(ctx, query); s != nil {
		defer d.cache.release(s)
		return s.stmt.QueryRowContext(ctx, args...)
	}
	return d.db.QueryRowContext(ctx, query, args...)
}

// cachedTx is the querier of a write transaction whose pool has a statement cache.
type cachedTx struct {
	tx    *sql.Tx
	cache *stmtCache

	mu     sync.Mutex
	stmts  map[string]*sql.Stmt // text -> the pool's statement bound to the transaction
	rows   map[string]*sql.Rows // text -> the last rows of its statement
	missed []string             // texts to prepare after the transaction
}

func newCachedTx(tx *sql.Tx, cache *stmtCache) *cachedTx {
	return &cachedTx{tx: tx, cache: cache, stmts: map[string]*sql.Stmt{}, rows: map[string]*sql.Rows{}}
}

// stmt returns the transaction's statement of text, or nil to run the text as it is.
func (t *cachedTx) stmt(ctx context.Context, text string) *sql.Stmt {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r := t.rows[text]; r != nil {
		if _, err := r.Columns(); err == nil {
			return nil // its rows are still being read: the compiled statement is busy
		}
		delete(t.rows, text)
	}
	if st := t.stmts[text]; st != nil {
		return st
	}
	s, again := t.cache.lookup(text)
	if s == nil {
		if again {
			t.missed = append(t.missed, text)
		}
		return nil
	}
	defer t.cache.release(s)
	st := t.tx.StmtContext(ctx, s.stmt)
	t.stmts[text] = st
	return st
}

func (t *cachedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, query, args...)
}

func (t *cachedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st := t.stmt(ctx, query)
	if st == nil {
		return t.tx.QueryContext(ctx, query, args...)
	}
	rows, err := st.QueryContext(ctx, args...)
	if err == nil {
		t.mu.Lock()
		t.rows[query] = rows
		t.mu.Unlock()
	}
	return rows, err
}

func (t *cachedTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, query, args...)
}

// done prepares, after the transaction, the texts it ran unprepared; t may be nil (no cache).
func (t *cachedTx) done(ctx context.Context) {
	if t == nil {
		return
	}
	t.mu.Lock()
	missed := t.missed
	t.missed = nil
	t.mu.Unlock()
	if len(missed) > 0 {
		t.cache.prepareLater(ctx, missed)
	}
}
