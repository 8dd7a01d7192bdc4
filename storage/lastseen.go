package storage

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// seenEvery is how often at most a device's last-seen time, IP and user agent are written.
const seenEvery = time.Minute

// lastSeen records when, from where and with which client each device was last seen, off the
// request path: DeviceSeen only notes it in memory (at most once per device per seenEvery),
// and one background writer at a time stores what is pending in one transaction. The writes
// change no cached data that matters (the token cache's copy of the device keeps the
// last-seen time it was read with, which nothing serves), so they invalidate no cache.
type lastSeen struct {
	mu       sync.Mutex
	written  map[[2]string]int64    // (user, device) -> when its last sighting was queued, ms
	pending  map[[2]string]seenInfo // waiting for the writer
	flushing bool                   // a writer goroutine is running
	wg       sync.WaitGroup         // the writer, for Close
}

type seenInfo struct {
	ts        int64
	ip, agent string
}

// maxSeenDevices bounds lastSeen.written; past it, entries older than seenEvery are dropped.
const maxSeenDevices = 100000

// DeviceSeen notes that a request of the device came from ip with the given User-Agent. The
// device's last_seen_ts, last_seen_ip and last_seen_user_agent are written shortly after,
// at most once per device per minute: a request never waits for it.
func (db *DB) DeviceSeen(userID, deviceID, ip, userAgent string) {
	s := &db.seen
	now := time.Now().UnixMilli()
	key := [2]string{userID, deviceID}
	s.mu.Lock()
	defer s.mu.Unlock()
	if last, ok := s.written[key]; ok && now-last < seenEvery.Milliseconds() {
		return
	}
	if s.written == nil || len(s.written) >= maxSeenDevices {
		s.prune(now)
	}
	s.written[key] = now
	if s.pending == nil {
		s.pending = map[[2]string]seenInfo{}
	}
	s.pending[key] = seenInfo{ts: now, ip: ip, agent: truncate(userAgent, 512)}
	if !s.flushing {
		s.flushing = true
		s.wg.Add(1)
		go db.flushSeen()
	}
}

// prune drops the devices last queued more than seenEvery before now (all of them when that
// is not enough), keeping the map bounded.
func (s *lastSeen) prune(now int64) {
	if s.written == nil {
		s.written = map[[2]string]int64{}
		return
	}
	for k, ts := range s.written {
		if now-ts >= seenEvery.Milliseconds() {
			delete(s.written, k)
		}
	}
	if len(s.written) >= maxSeenDevices {
		s.written = map[[2]string]int64{}
	}
}

// flushSeen writes the pending sightings until none are left.
func (db *DB) flushSeen() {
	s := &db.seen
	defer s.wg.Done()
	for {
		s.mu.Lock()
		batch := s.pending
		s.pending = nil
		if len(batch) == 0 {
			s.flushing = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := db.WithTx(ctx, func(tx *Tx) error {
			for k, v := range batch {
				// A device logged out meanwhile is no longer there: nothing is updated.
				if _, err := tx.exec(ctx, `UPDATE devices SET last_seen_ts = $3, last_seen_ip = $4, last_seen_user_agent = $5
					WHERE user_id = $1 AND device_id = $2 AND last_seen_ts <= $3`, k[0], k[1], v.ts, v.ip, v.agent); err != nil {
					return fmt.Errorf("update last seen of device %s %s: %w", k[0], k[1], err)
				}
			}
			return nil
		})
		cancel()
		if err != nil {
			// Not worth a retry: the device's next request a minute on records it again.
			s.mu.Lock()
			for k := range batch {
				delete(s.written, k)
			}
			s.mu.Unlock()
		}
	}
}

// truncate cuts s to at most n bytes of valid UTF-8 (PostgreSQL refuses anything else).
func truncate(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "")
}
