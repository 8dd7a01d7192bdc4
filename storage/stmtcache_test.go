package storage

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

func openStmtCacheTest(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "db"), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if db.readerStmts == nil || db.writerStmts == nil {
		t.Fatal("SQLite pools have no statement cache")
	}
	ctx := context.Background()
	err = db.WithTx(ctx, func(tx *Tx) error {
		if _, err := tx.exec(ctx, `CREATE TABLE stmtcache_t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
			return err
		}
		for i := 0; i < 10; i++ {
			if _, err := tx.exec(ctx, `INSERT INTO stmtcache_t (k, v) VALUES ($1, $2)`, i, fmt.Sprint("v", i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func cached(c *stmtCache, text string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.entries[text]
	return ok
}

// A text is prepared from its second run on, in and out of transactions, and gives the same
// answers prepared as unprepared.
func TestStmtCacheKeepsRepeatedTexts(t *testing.T) {
	db := openStmtCacheTest(t)
	ctx := context.Background()
	const sel = `SELECT v FROM stmtcache_t WHERE k = $1`
	for i := 0; i < 3; i++ {
		var v string
		if err := db.queryRow(ctx, sel, i).Scan(&v); err != nil || v != fmt.Sprint("v", i) {
			t.Fatalf("run %d: %q, %v", i, v, err)
		}
		if got, want := cached(db.readerStmts, sel), i >= 1; got != want {
			t.Fatalf("after run %d: kept %v, want %v", i, got, want)
		}
	}
	// The insert ran ten times in one transaction, unprepared, and was prepared after it.
	ins := `INSERT INTO stmtcache_t (k, v) VALUES ($1, $2)`
	if !cached(db.writerStmts, ins) {
		t.Fatal("a text run ten times in a transaction was not prepared after it")
	}
	err := db.WithTx(ctx, func(tx *Tx) error {
		for i := 10; i < 20; i++ {
			if _, err := tx.exec(ctx, ins, i, fmt.Sprint("v", i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.queryRow(ctx, `SELECT COUNT(*) FROM stmtcache_t`).Scan(&n); err != nil || n != 20 {
		t.Fatalf("rows: %d, %v", n, err)
	}
	// A one-off text is never kept.
	if cached(db.readerStmts, `SELECT COUNT(*) FROM stmtcache_t`) {
		t.Fatal("a text run once was prepared")
	}
}

// Inside a transaction, a text whose rows are still open is run on its own while the
// prepared statement is busy; both result sets are complete.
func TestStmtCacheNestedRowsInTx(t *testing.T) {
	db := openStmtCacheTest(t)
	ctx := context.Background()
	const sel = `SELECT k FROM stmtcache_t WHERE k < $1 ORDER BY k`
	count := func(q *Q, below int) (int, error) {
		rows, err := q.query(ctx, sel, below)
		if err != nil {
			return 0, err
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			n++
		}
		return n, rows.Err()
	}
	for round := 0; round < 3; round++ {
		err := db.WithTx(ctx, func(tx *Tx) error {
			rows, err := tx.query(ctx, sel, 10)
			if err != nil {
				return err
			}
			defer rows.Close()
			outer := 0
			for rows.Next() {
				var k int
				if err := rows.Scan(&k); err != nil {
					return err
				}
				if k != outer {
					return fmt.Errorf("outer row %d is %d", outer, k)
				}
				outer++
				n, err := count(&tx.Q, k)
				if err != nil {
					return err
				}
				if n != k {
					return fmt.Errorf("inner count below %d: %d", k, n)
				}
			}
			if outer != 10 {
				return fmt.Errorf("outer rows: %d", outer)
			}
			if err := rows.Err(); err != nil {
				return err
			}
			rows.Close()
			// Closed, the prepared statement serves the text again.
			n, err := count(&tx.Q, 5)
			if err != nil || n != 5 {
				return fmt.Errorf("after the rows closed: %d, %v", n, err)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
}

// Many goroutines read through a cache small enough to evict all the time, while a writer
// commits: every answer is right, and nothing fails because a statement was closed under it.
func TestStmtCacheConcurrentEviction(t *testing.T) {
	db := openStmtCacheTest(t)
	db.readerStmts.max, db.writerStmts.max = 3, 3
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				k := (g + i) % 10
				// Six texts for a cache of three.
				text := fmt.Sprintf(`SELECT v FROM stmtcache_t WHERE k = $1 AND %d = %d`, i%6, i%6)
				var v string
				if err := db.queryRow(ctx, text, k).Scan(&v); err != nil || v != fmt.Sprint("v", k) {
					errs <- fmt.Errorf("goroutine %d read %d: %q, %v", g, i, v, err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 50; i++ {
			err := db.WithTx(ctx, func(tx *Tx) error {
				text := fmt.Sprintf(`UPDATE stmtcache_t SET v = v WHERE k = $1 AND %d = %d`, i%6, i%6)
				_, err := tx.exec(ctx, text, i%10)
				return err
			})
			if err != nil {
				errs <- fmt.Errorf("write %d: %v", i, err)
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := db.readerStmts.lru.Len(); n > 3 {
		t.Fatalf("%d statements kept with a bound of 3", n)
	}
}
