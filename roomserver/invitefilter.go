package roomserver

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/lattice-chat/lattice/storage"
)

// Invite permission types: the spec's (v1.18, default_action "block" only) and MSC4155's
// unstable one, which lists allowed, ignored and blocked users and servers as globs.
const (
	InvitePermissionType         = "m.invite_permission_config"
	UnstableInvitePermissionType = "org.matrix.msc4155.invite_permission_config"
)

// InviteAction is what a user's invite permissions do with one invite.
type InviteAction int

// The three outcomes of MSC4155 (with MSC4283's meaning of ignore and block).
const (
	// InviteAllow lets the invite through.
	InviteAllow InviteAction = iota
	// InviteIgnore accepts the invite (the inviter sees success) but never shows it to the
	// invitee: not in /sync, not in sliding sync, no notification.
	InviteIgnore
	// InviteBlock refuses the invite with 403 M_INVITE_BLOCKED.
	InviteBlock
)

// InvitePermissions is a user's invite configuration, read from their account data. The nil
// value allows every invite.
type InvitePermissions struct {
	blockAll bool // m.invite_permission_config default_action "block"
	rules    *msc4155Rules
}

// msc4155Rules is the content of org.matrix.msc4155.invite_permission_config. Missing or null
// lists are empty; enabled defaults to true.
type msc4155Rules struct {
	Enabled        *bool    `json:"enabled"`
	AllowedUsers   []string `json:"allowed_users"`
	IgnoredUsers   []string `json:"ignored_users"`
	BlockedUsers   []string `json:"blocked_users"`
	AllowedServers []string `json:"allowed_servers"`
	IgnoredServers []string `json:"ignored_servers"`
	BlockedServers []string `json:"blocked_servers"`
}

// InvitePermissions returns userID's invite permissions, or nil when they allow everything.
func (s *Server) InvitePermissions(ctx context.Context, userID string) *InvitePermissions {
	return readInvitePermissions(ctx, &s.db.Q, userID)
}

// readInvitePermissions reads the two account data entries through q (a transaction's or the
// database's). Content of the wrong shape counts as absent, as the spec says of an invalid
// default_action.
func readInvitePermissions(ctx context.Context, q *storage.Q, userID string) *InvitePermissions {
	var p InvitePermissions
	if raw, err := q.AccountDataEntry(ctx, userID, "", InvitePermissionType); err == nil {
		var c struct {
			DefaultAction any `json:"default_action"`
		}
		p.blockAll = json.Unmarshal([]byte(raw), &c) == nil && c.DefaultAction == "block"
	}
	if raw, err := q.AccountDataEntry(ctx, userID, "", UnstableInvitePermissionType); err == nil {
		var r msc4155Rules
		if json.Unmarshal([]byte(raw), &r) == nil && (r.Enabled == nil || *r.Enabled) {
			p.rules = &r
		}
	}
	if !p.blockAll && p.rules == nil {
		return nil
	}
	return &p
}

// BlocksAll reports whether every invite is refused, whoever sends it.
func (p *InvitePermissions) BlocksAll() bool { return p != nil && p.blockAll }

// Verdict applies the permissions to an invite from inviter. The spec's default_action
// "block" refuses everything; otherwise MSC4155's order applies, the first match deciding:
//  1. allowed_users: allow   2. ignored_users: ignore   3. blocked_users: block
//  4. allowed_servers: allow  5. ignored_servers: ignore  6. blocked_servers: block
//  7. otherwise allow.
//
// (m.ignored_user_list, which the MSC applies first, is applied where invites are served.)
func (p *InvitePermissions) Verdict(inviter string) InviteAction {
	if p == nil {
		return InviteAllow
	}
	if p.blockAll {
		return InviteBlock
	}
	r := p.rules
	server := serverOfUser(inviter)
	for _, step := range []struct {
		globs  []string
		value  string
		server bool
		action InviteAction
	}{
		{r.AllowedUsers, inviter, false, InviteAllow},
		{r.IgnoredUsers, inviter, false, InviteIgnore},
		{r.BlockedUsers, inviter, false, InviteBlock},
		{r.AllowedServers, server, true, InviteAllow},
		{r.IgnoredServers, server, true, InviteIgnore},
		{r.BlockedServers, server, true, InviteBlock},
	} {
		for _, g := range step.globs {
			if step.server {
				g = strings.ToLower(g) // server names compare without regard to case
			}
			if globMatch(g, step.value) {
				return step.action
			}
		}
	}
	return InviteAllow
}

// (globMatch, the spec's glob-style matching, is in acl.go.)

// serverOfUser returns the server name of a user ID without its port, lower-cased: server
// globs match it as server ACL globs match server names.
func serverOfUser(userID string) string {
	_, host, _ := strings.Cut(userID, ":")
	if strings.HasPrefix(host, "[") { // an IPv6 literal
		if end := strings.Index(host, "]"); end >= 0 {
			host = host[:end+1]
		}
	} else if i := strings.Index(host, ":"); i >= 0 {
		host = host[:i]
	}
	return strings.ToLower(host)
}
