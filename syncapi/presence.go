package syncapi

import (
	"context"

	"github.com/lattice-chat/lattice/internal/presence"
	"github.com/lattice-chat/lattice/storage"
)

// syncPresence fills the presence of the users who share a joined room with the requester,
// and the requester's own, changed after since (every stored one in an initial sync). On an
// incremental sync it adds the current presence of those who started sharing a room with
// the requester since (a join by them or by the requester), changed or not: the requester's
// client has not been told it before. Ignored users are left out.
func (s *Server) syncPresence(ctx context.Context, req syncRequest, since, to Token, resp *syncResponse, memberships []storage.Membership) error {
	var ps []*storage.Presence
	if since.Presence < to.Presence {
		var err error
		if ps, err = s.db.PresenceSince(ctx, req.viewer.UserID, since.Presence, to.Presence); err != nil {
			return err
		}
	}
	if req.since != nil && to.PDU > since.PDU && membershipChanged(resp) {
		peers, err := s.db.StartedSharing(ctx, req.viewer.UserID, since.PDU, to.PDU)
		if err != nil {
			return err
		}
		current, err := s.db.PresenceOf(ctx, peers, to.Presence)
		if err != nil {
			return err
		}
		for _, p := range current {
			if p.StreamPos <= since.Presence { // later ones are in ps already
				ps = append(ps, p)
			}
		}
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
