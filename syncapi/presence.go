package syncapi

import (
	"context"

	"github.com/lattice-chat/lattice/internal/presence"
	"github.com/lattice-chat/lattice/storage"
)

// syncPresence fills the presence of the users who share a joined room with the requester,
// and the requester's own, changed after since (every stored one in an initial sync).
// Ignored users are left out.
func (s *Server) syncPresence(ctx context.Context, req syncRequest, since, to Token, resp *syncResponse, memberships []storage.Membership) error {
	if since.Presence >= to.Presence {
		return nil
	}
	ps, err := s.db.PresenceSince(ctx, req.viewer.UserID, since.Presence, to.Presence)
	if err != nil {
		return err
	}
	now := s.rooms.Now()
	for _, p := range ps {
		if req.viewer.Ignored[p.UserID] {
			continue
		}
		resp.Presence.Events = append(resp.Presence.Events, map[string]any{
			"type": "m.presence", "sender": p.UserID, "content": presence.Content(p, now),
		})
	}
	return nil
}

// setPresenceParam checks the set_presence parameter of /sync: "" (online), online,
// unavailable or offline.
func setPresenceParam(v string) bool {
	return v == "" || presence.Valid(v)
}
