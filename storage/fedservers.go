package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// The federation destinations of ephemeral data (EDUs): the other servers with users joined
// to a room, or to any room a user is joined to. Server names are not stored apart from user
// IDs, so the users are selected and their servers taken from the IDs; the users of the
// server asking (ours) are left out in SQL, so a room of mostly local users costs little.
// The suffix test is written with substr and length, which both dialects share (SQLite has
// no strpos, PostgreSQL no instr).

// RemoteServersInRoom returns the servers other than ours with a user joined to roomID,
// sorted; none for an unknown room.
func (q *Q) RemoteServersInRoom(ctx context.Context, roomID, ours string) ([]string, error) {
	suffix := ":" + ours
	users, err := q.strings(ctx, `
		SELECT DISTINCT m.user_id FROM rooms r JOIN memberships m ON m.room_nid = r.room_nid
		WHERE r.room_id = $1 AND m.membership = 'join'
			AND substr(m.user_id, length(m.user_id) - $2 + 1) <> $3`,
		roomID, utf8.RuneCountInString(suffix), suffix)
	if err != nil {
		return nil, fmt.Errorf("select remote servers in %s: %w", roomID, err)
	}
	partial, err := q.strings(ctx, `
		SELECT p.servers_in_room FROM partial_state_rooms p JOIN rooms r ON r.room_nid = p.room_nid
		WHERE r.room_id = $1`, roomID)
	if err != nil {
		return nil, fmt.Errorf("select partial state servers in %s: %w", roomID, err)
	}
	return withPartialServers(serversOf(users), partial, ours), nil
}

// RemoteServersSharingRooms returns the servers other than ours with a user joined to a room
// userID is joined to, sorted: those to tell about userID's presence and devices.
func (q *Q) RemoteServersSharingRooms(ctx context.Context, userID, ours string) ([]string, error) {
	suffix := ":" + ours
	users, err := q.strings(ctx, `
		SELECT DISTINCT b.user_id FROM memberships a JOIN memberships b ON b.room_nid = a.room_nid
		WHERE a.user_id = $1 AND a.membership = 'join' AND b.membership = 'join'
			AND substr(b.user_id, length(b.user_id) - $2 + 1) <> $3`,
		userID, utf8.RuneCountInString(suffix), suffix)
	if err != nil {
		return nil, fmt.Errorf("select remote servers sharing a room with %s: %w", userID, err)
	}
	partial, err := q.strings(ctx, `
		SELECT p.servers_in_room FROM partial_state_rooms p JOIN memberships a ON a.room_nid = p.room_nid
		WHERE a.user_id = $1 AND a.membership = 'join'`, userID)
	if err != nil {
		return nil, fmt.Errorf("select partial state servers sharing a room with %s: %w", userID, err)
	}
	return withPartialServers(serversOf(users), partial, ours), nil
}

// withPartialServers adds to servers (sorted) those of the servers_in_room lists (JSON
// arrays) of rooms whose state is partial, other than ours: while a room's members are
// unknown, every server that had joined members at the join may be in it (MSC3902), and
// hears of its events, typing, receipts, presence and device list updates.
func withPartialServers(servers, lists []string, ours string) []string {
	if len(lists) == 0 {
		return servers
	}
	set := map[string]bool{}
	for _, s := range servers {
		set[s] = true
	}
	for _, l := range lists {
		var names []string
		if json.Unmarshal([]byte(l), &names) != nil {
			continue
		}
		for _, n := range names {
			if n != ours && n != "" && !set[n] {
				set[n] = true
				servers = append(servers, n)
			}
		}
	}
	slices.Sort(servers)
	return servers
}

// serversOf returns the distinct server names of user IDs, sorted.
func serversOf(users []string) []string {
	set := map[string]bool{}
	for _, u := range users {
		if _, server, ok := strings.Cut(u, ":"); ok && server != "" {
			set[server] = true
		}
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}
