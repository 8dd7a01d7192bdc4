package storage

import (
	"sync"
	"time"
)

// readCache remembers the results of frequent reads between the writes that change them. A
// transaction that writes the data drops the whole cache when it commits; a read that raced
// with such a commit is not remembered (the generation moved), so nothing stale outlives the
// commit in this process. Entries also expire after ttl, which bounds how long a write by
// another process can take to be seen here.
type readCache[K comparable, V any] struct {
	ttl time.Duration
	max int

	mu      sync.Mutex // guards gen and entries
	gen     uint64
	entries map[K]cacheEntry[V]
}

type cacheEntry[V any] struct {
	val     V
	expires time.Time
}

// get returns the cached value for k, and the generation to pass to put after a read.
func (c *readCache[K, V]) get(k K) (V, bool, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if ok && time.Now().Before(e.expires) {
		return e.val, true, c.gen
	}
	var zero V
	return zero, false, c.gen
}

// put remembers v for k unless the cache was dropped since gen was read.
func (c *readCache[K, V]) put(k K, v V, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if c.entries == nil || len(c.entries) >= c.max {
		c.entries = map[K]cacheEntry[V]{}
	}
	c.entries[k] = cacheEntry[V]{val: v, expires: time.Now().Add(c.ttl)}
}

func (c *readCache[K, V]) drop() {
	c.mu.Lock()
	c.gen++
	c.entries = nil
	c.mu.Unlock()
}
