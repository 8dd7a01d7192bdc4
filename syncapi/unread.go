package syncapi

import (
	"context"
	"maps"
	"sync"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// syncUnread fills the notification counts of every joined room in the response, whether it
// is there for new events, receipts (which move the counts down) or account data.
func (s *Server) syncUnread(ctx context.Context, req syncRequest, _, to Token, resp *syncResponse, memberships []storage.Membership) error {
	if err := s.prefetchUnread(ctx, req, to, resp, memberships); err != nil {
		return err
	}
	for _, m := range memberships {
		jr, ok := resp.Rooms.Join[m.RoomID]
		if !ok || m.Membership != spec.Join {
			continue
		}
		var err error
		if jr.UnreadNotifications, jr.UnreadThreadNotifications, err = s.unreadCounts(ctx, req, m, to); err != nil {
			return err
		}
	}
	return nil
}

// unreadCounts returns the notification counts of a joined room for the user: the
// notifications (push actions stored when events committed) after their read receipts
// (client-server API, "Receiving notifications"). With the filter's
// room.timeline.unread_thread_notifications, unread_notifications counts the main timeline
// only and each thread with notifications gets its own counts, keyed by its root; otherwise
// unread_notifications counts the whole room.
func (s *Server) unreadCounts(ctx context.Context, req syncRequest, m storage.Membership, to Token) (unreadCounts, map[string]unreadCounts, error) {
	read, _ := req.pre.readOf(m.RoomNID)
	var counted map[string]storage.UnreadCount
	if req.pre != nil {
		counted = req.pre.counts[m.RoomNID]
	}
	byThread, err := s.unread.counts(ctx, s.db, req.viewer.UserID, m.RoomNID, to.PDU, to.Receipts, read, counted)
	if err != nil {
		return unreadCounts{}, nil, err
	}
	split := req.filter.Room.Timeline.UnreadThreadNotifications
	var total unreadCounts
	var threads map[string]unreadCounts
	for thread, c := range byThread {
		counts := unreadCounts{HighlightCount: c.Highlights, NotificationCount: c.Notifications}
		if !split || thread == storage.ThreadMain {
			total.HighlightCount += counts.HighlightCount
			total.NotificationCount += counts.NotificationCount
			continue
		}
		if threads == nil {
			threads = map[string]unreadCounts{}
		}
		threads[thread] = counts
	}
	return total, threads, nil
}

// unreadCache keeps each user's counts per room with the receipts and stream position they
// were counted at, so that a sync counts only the notifications that arrived since (a room a
// user never reads would otherwise cost a scan of all its notifications on every sync). The
// database stays the source of truth: an entry is used only while the user's receipts are the
// same and the notifications generation (storage.DB.NotificationsGeneration) is the one it was
// counted at. Notifications of events up to a position never change once written (rows are
// never changed, the notification purge deletes only read ones, and a push span closes only at
// a new event); a history purge or the retention job, which may delete unread ones, moves the
// generation, so that every count is taken afresh.
type unreadCache struct {
	mu      sync.Mutex // guards entries
	entries map[unreadKey]*unreadEntry
}

type unreadKey struct {
	userID  string
	roomNID int64
}

// unreadEntry is immutable once stored.
type unreadEntry struct {
	read        map[string]int64
	receiptsPos int64 // the receipts stream position read was current at
	upTo        int64
	gen         int64 // the notifications generation counts were taken at
	counts      map[string]storage.UnreadCount
}

// maxUnreadEntries bounds the cache; past it, arbitrary entries are dropped.
const maxUnreadEntries = 100000

// preRead, when not nil, is the user's read positions in the room, read at receiptsPos, and
// preCounts, when not nil, the counts up to upTo after them (both from a prefetch).
func (c *unreadCache) counts(ctx context.Context, db *storage.DB, userID string, roomNID, upTo, receiptsPos int64, preRead map[string]int64, preCounts map[string]storage.UnreadCount) (map[string]storage.UnreadCount, error) {
	key := unreadKey{userID, roomNID}
	// Read before counting: a purge committing after this read moves the generation, and the
	// next sync counts again.
	gen, err := db.NotificationsGeneration(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	e := c.entries[key]
	c.mu.Unlock()
	if e != nil && (gen < 0 || e.gen != gen) {
		e = nil // notifications were deleted since it was counted
	}
	read := preRead
	if e != nil && e.receiptsPos == receiptsPos {
		read = e.read // no receipt anywhere since: the user's are unchanged
	} else if read == nil {
		var err error
		if read, err = db.ReadPositions(ctx, userID, roomNID); err != nil {
			return nil, err
		}
	}
	switch {
	case e != nil && maps.Equal(e.read, read) && e.upTo == upTo:
		if e.receiptsPos != receiptsPos {
			c.mu.Lock()
			c.entries[key] = &unreadEntry{read: read, receiptsPos: receiptsPos, upTo: upTo, gen: gen, counts: e.counts}
			c.mu.Unlock()
		}
		return e.counts, nil
	case e != nil && maps.Equal(e.read, read) && e.upTo < upTo:
		rows, err := db.UnreadRows(ctx, userID, roomNID, e.upTo, upTo)
		if err != nil {
			return nil, err
		}
		counts := maps.Clone(e.counts)
		for _, r := range rows {
			if r.EventNID <= max(read[""], read[r.ThreadID]) {
				continue
			}
			n := counts[r.ThreadID]
			n.Notifications++
			if r.Highlight {
				n.Highlights++
			}
			counts[r.ThreadID] = n
		}
		e = &unreadEntry{read: read, receiptsPos: receiptsPos, upTo: upTo, gen: gen, counts: counts}
	default:
		counts := preCounts
		if counts == nil || !maps.Equal(read, preRead) {
			var err error
			if counts, err = db.UnreadCounts(ctx, userID, roomNID, read, upTo); err != nil {
				return nil, err
			}
		}
		e = &unreadEntry{read: read, receiptsPos: receiptsPos, upTo: upTo, gen: gen, counts: counts}
	}
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[unreadKey]*unreadEntry{}
	}
	if len(c.entries) >= maxUnreadEntries {
		for k := range c.entries {
			delete(c.entries, k)
			if len(c.entries) < maxUnreadEntries/2 {
				break
			}
		}
	}
	c.entries[key] = e
	c.mu.Unlock()
	return e.counts, nil
}

// prefetchUnread counts, in one read, the notifications of the joined rooms of an initial
// sync whose counts the cache cannot give (a first sync after a start, a new device).
func (s *Server) prefetchUnread(ctx context.Context, req syncRequest, to Token, resp *syncResponse, memberships []storage.Membership) error {
	p := req.pre
	if p == nil || p.read == nil {
		return nil
	}
	gen, err := s.db.NotificationsGeneration(ctx)
	if err != nil {
		return err
	}
	var rooms []int64
	s.unread.mu.Lock()
	for _, m := range memberships {
		if _, ok := resp.Rooms.Join[m.RoomID]; !ok || m.Membership != spec.Join {
			continue
		}
		read, ok := p.readOf(m.RoomNID)
		if !ok {
			continue
		}
		e := s.unread.entries[unreadKey{req.viewer.UserID, m.RoomNID}]
		if e == nil || gen < 0 || e.gen != gen || !maps.Equal(e.read, read) {
			rooms = append(rooms, m.RoomNID)
		}
	}
	s.unread.mu.Unlock()
	if len(rooms) < 2 {
		return nil
	}
	read := make(map[int64]map[string]int64, len(rooms))
	for _, r := range rooms {
		read[r], _ = p.readOf(r)
	}
	p.counts, err = s.db.RoomsUnreadCounts(ctx, req.viewer.UserID, rooms, read, to.PDU)
	return err
}
