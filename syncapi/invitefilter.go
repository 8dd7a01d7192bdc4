package syncapi

import (
	"context"

	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// invitePolicy decides which of a user's invites /sync and sliding sync serve. The user's
// invite permissions are read at most once per request, at the first invite.
type invitePolicy struct {
	s      *Server
	viewer roomserver.Viewer
	loaded bool
	perms  *roomserver.InvitePermissions
}

func (s *Server) invitePolicy(viewer roomserver.Viewer) *invitePolicy {
	return &invitePolicy{s: s, viewer: viewer}
}

// hidden reports whether the invite m must not be served: the user blocks every invite
// (spec v1.18), its sender is in m.ignored_user_list, or the user's MSC4155 permissions
// ignore or block its sender (an ignored invite exists in the room, but its invitee never
// sees it; a blocked one from before the block is held back the same way). Relaxing the
// permissions brings such invites back on the next initial sync.
func (p *invitePolicy) hidden(ctx context.Context, m storage.Membership) (bool, error) {
	if !p.loaded {
		p.perms, p.loaded = p.s.rooms.InvitePermissions(ctx, p.viewer.UserID), true
	}
	if p.perms.BlocksAll() {
		return true, nil
	}
	if p.perms == nil && len(p.viewer.Ignored) == 0 {
		return false, nil
	}
	inviter, err := p.s.membershipSender(ctx, m)
	if err != nil {
		return false, err
	}
	return p.viewer.Ignored[inviter] || p.perms.Verdict(inviter) != roomserver.InviteAllow, nil
}
