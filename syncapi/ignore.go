package syncapi

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// viewer returns who events are formatted for, with the user's ignore list
// (m.ignored_user_list account data).
func (s *Server) viewer(ctx context.Context, dev *storage.Device) roomserver.Viewer {
	return roomserver.Viewer{UserID: dev.UserID, DeviceID: dev.DeviceID, Ignored: s.ignoredUsers(ctx, dev.UserID)}
}

// ignoreCache remembers ignore lists while the account data stream does not move, so that a
// sync does not read the list from the database every time.
type ignoreCache struct {
	mu    sync.Mutex // guards pos and lists
	pos   int64      // account data position the lists were read at
	lists map[string]map[string]bool
}

// ignoredUsers returns the users in the user's m.ignored_user_list.
func (s *Server) ignoredUsers(ctx context.Context, userID string) map[string]bool {
	pos := s.notifier.Current().AccountData
	c := &s.ignored
	c.mu.Lock()
	if c.pos != pos || c.lists == nil {
		c.pos, c.lists = pos, map[string]map[string]bool{}
	}
	list, ok := c.lists[userID]
	c.mu.Unlock()
	if ok {
		return list
	}
	list = s.readIgnoredUsers(ctx, userID)
	c.mu.Lock()
	if c.pos == pos {
		c.lists[userID] = list
	}
	c.mu.Unlock()
	return list
}

func (s *Server) readIgnoredUsers(ctx context.Context, userID string) map[string]bool {
	content, err := s.db.AccountDataEntry(ctx, userID, "", "m.ignored_user_list")
	if err != nil {
		return nil
	}
	var c struct {
		IgnoredUsers map[string]json.RawMessage `json:"ignored_users"`
	}
	if json.Unmarshal([]byte(content), &c) != nil || len(c.IgnoredUsers) == 0 {
		return nil
	}
	out := make(map[string]bool, len(c.IgnoredUsers))
	for u := range c.IgnoredUsers {
		out[u] = true
	}
	return out
}

// dropIgnored removes the non-state events of ignored users: the spec says servers must not
// send their events, but must still send their state events.
func dropIgnored(evs []*storage.Event, ignored map[string]bool) []*storage.Event {
	if len(ignored) == 0 {
		return evs
	}
	out := evs[:0:0]
	for _, ev := range evs {
		if !ignored[ev.Sender] || ev.IsState() {
			out = append(out, ev)
		}
	}
	return out
}
