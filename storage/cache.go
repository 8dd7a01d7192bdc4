package storage

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// readCache remembers the results of frequent reads between the writes that change them.
//
// The database is the only source of truth: each cache has a row in cache_generations that
// every transaction writing the cached data increments before it commits (Tx.bumpGenerations),
// in whichever process runs it — this server, another server process on the same PostgreSQL,
// or an admin command such as `lattice reset-password`. A cached value is used only while that
// row still holds the generation it was read at, so a write by any process is seen by the next
// read here, not after a timeout. Checking the generation is a one-row primary-key read: on
// SQLite about 8 µs, against 13 µs for an access-token lookup and much more for a user's
// memberships (BenchmarkDeviceByToken); on PostgreSQL it is a round trip. So the row is read
// at most once per recheckEvery, and this process's own writes clear the cache when they
// commit (invalidate): a write here is seen at once, a write by another process within
// recheckEvery.
type readCache[K comparable, V any] struct {
	name string // the row in cache_generations
	max  int
	// strict, set in a cluster (DB.SetStrictCaches), has every get read the generation: a
	// write committed by another process is then seen by the next read here.
	strict bool

	mu      sync.Mutex // guards gen, checked and entries
	gen     int64      // the generation every entry was read at; -1 after a local write
	epoch   int64      // local writes so far: a generation read across one is not adopted
	checked time.Time  // when gen was last read from the database
	entries map[K]V
}

// recheckEvery bounds how long a write by another process (an admin command, another server
// process on the same PostgreSQL) may take to reach this process's caches.
const recheckEvery = 200 * time.Millisecond

// get returns the cached value for k if the cache's generation has not moved since it was
// read, and the generation to pass to put after reading the value afresh.
func (c *readCache[K, V]) get(ctx context.Context, q *Q, k K) (V, bool, int64, error) {
	var zero V
	c.mu.Lock()
	if c.gen >= 0 && !c.strict && time.Since(c.checked) < recheckEvery {
		v, ok := c.entries[k]
		gen := c.gen
		c.mu.Unlock()
		return v, ok, gen, nil
	}
	epoch := c.epoch
	c.mu.Unlock()
	var gen int64
	err := q.queryRow(ctx, `SELECT generation FROM cache_generations WHERE name = $1`, c.name).Scan(&gen)
	if err != nil {
		return zero, false, 0, fmt.Errorf("select cache generation %s: %w", c.name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch {
		// This process committed a write while the generation was being read: it may be
		// the generation from before the write. Read through, and cache nothing.
		return zero, false, -1, nil
	}
	if gen > c.gen {
		c.gen, c.entries = gen, nil
	}
	if gen == c.gen {
		c.checked = time.Now()
	}
	if gen != c.gen {
		return zero, false, gen, nil
	}
	v, ok := c.entries[k]
	return v, ok, gen, nil
}

// put remembers v for k, read after the generation gen was, unless the generation has moved
// since: v may then be stale.
func (c *readCache[K, V]) put(k K, v V, gen int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen < 0 || c.gen != gen {
		return
	}
	if c.entries == nil || len(c.entries) >= c.max {
		c.entries = map[K]V{}
	}
	c.entries[k] = v
}

// invalidate forgets every entry after this process committed a write of the cached data:
// the next get reads the generation, which the write moved, and a value read before the write
// (put with the old generation) is not kept.
func (c *readCache[K, V]) invalidate() {
	c.mu.Lock()
	c.gen, c.entries = -1, nil
	c.epoch++
	c.mu.Unlock()
}

// recheck has the next get read the generation again (another process may have moved it:
// package cluster calls it on each notification from another process). Entries stay: they
// are dropped only if the generation did move. A get reading the generation meanwhile keeps
// nothing it read (epoch), since it may have read the generation from before.
func (c *readCache[K, V]) recheck() {
	c.mu.Lock()
	c.checked = time.Time{}
	c.epoch++
	c.mu.Unlock()
}

// RecheckCaches has every cache read its generation again before it answers next, instead
// of within recheckEvery: another process of the cluster has committed a write (package
// cluster calls it on each of their notifications, which are sent after the commit).
func (db *DB) RecheckCaches() {
	db.tokens.recheck()
	db.keyCounts.recheck()
	db.memberships.recheck()
	db.roomJoined.recheck()
	db.unreadGen.recheck()
	db.overrides.recheck()
	db.purgedLeaves.recheck()
	db.stickyUntil.recheck()
	db.httpPushers.recheck()
}

// SetStrictCaches has every cached read check its cache's generation in the database (a
// one-row primary-key read), instead of at most once per recheckEvery: in a cluster, a write
// committed by one process (a logout, a lock, a join) is then seen by the next read of any
// other, as it is by the next read of the process that wrote it. Call it before serving.
func (db *DB) SetStrictCaches() {
	db.tokens.strict = true
	db.keyCounts.strict = true
	db.memberships.strict = true
	db.roomJoined.strict = true
	db.unreadGen.strict = true
	db.overrides.strict = true
	db.purgedLeaves.strict = true
	db.stickyUntil.strict = true
	db.httpPushers.strict = true
}

// SetGenerationsMoved has fn called after each commit that moved cache generations (a write
// of cached data), so that package cluster can tell the other processes to recheck theirs.
// fn must not block.
func (db *DB) SetGenerationsMoved(fn func()) { db.genMoved.Store(&fn) }

// bumpGenerations increments the generations of the caches whose data the transaction wrote,
// so that every process stops using what it had cached of them once this commits.
func (tx *Tx) bumpGenerations(ctx context.Context) error {
	var names []any
	if tx.devicesChanged {
		names = append(names, "devices")
	}
	if tx.keysChanged || tx.devicesChanged {
		names = append(names, "device_keys")
	}
	if tx.membershipsChanged {
		names = append(names, "memberships")
	}
	if tx.notificationsDeleted {
		names = append(names, "push_actions")
	}
	if tx.overridesChanged {
		names = append(names, "ratelimit_overrides")
	}
	if tx.purgedLeavesAdded {
		names = append(names, "purged_room_leaves")
	}
	if tx.stickyAdded {
		names = append(names, "sticky_events")
	}
	if tx.pushersSet {
		names = append(names, "pushers")
	}
	tx.generationsMoved = len(names) > 0
	for _, name := range names {
		if _, err := tx.exec(ctx, `UPDATE cache_generations SET generation = generation + 1 WHERE name = $1`, name); err != nil {
			return fmt.Errorf("bump cache generation %s: %w", name, err)
		}
	}
	return nil
}

// NotificationsGeneration returns a number that moves whenever a transaction of any process
// deletes notifications (push actions) that a user may not have read: a history purge or the
// retention job. A cache of unread counts (syncapi) keeps counts only while the generation
// they were counted at is current. It is -1 while a deletion by this process is committing:
// counts taken then must not be kept. Like the other caches' generations it costs a database
// read at most every recheckEvery, and this process's own deletions are seen at once.
func (db *DB) NotificationsGeneration(ctx context.Context) (int64, error) {
	_, _, gen, err := db.unreadGen.get(ctx, &db.Q, struct{}{})
	return gen, err
}
