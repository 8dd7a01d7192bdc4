package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

	"github.com/lattice-chat/lattice/storage"
)

// mRoomServerACL is the type of the server ACL state event.
const mRoomServerACL = "m.room.server_acl"

// ServerAllowed reports whether server may take part in roomID under the room's current
// m.room.server_acl event (the client-server API's "Server Access Control Lists"). A room
// without one, or one this server does not know, allows every server. An internal failure
// to read the ACL denies: the callers drop what a denied server sent, and a remote server's
// traffic is better lost than let past a ban.
func (s *Server) ServerAllowed(ctx context.Context, roomID string, server spec.ServerName) bool {
	knid, err := s.lookupStateKeyNID(ctx, storage.StateKey{Type: mRoomServerACL})
	if err != nil {
		s.log.Error("server ACL: look up state key", "room_id", roomID, "err", err)
		return false
	}
	if knid == 0 {
		return true // no room has ever had an ACL
	}
	// Read from the database, not under the room lock: the room's input may be waiting on
	// the very server whose request asks this.
	room, err := s.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return true
	} else if err != nil {
		s.log.Error("server ACL: load room", "room_id", roomID, "err", err)
		return false
	}
	ev, err := s.db.CurrentStateEvent(ctx, room.NID, storage.StateKey{Type: mRoomServerACL})
	if errors.Is(err, storage.ErrNotFound) {
		return true
	} else if err != nil {
		s.log.Error("server ACL: load event", "room_id", roomID, "err", err)
		return false
	}
	return aclAllows([]byte(gjson.GetBytes(ev.JSON, "content").Raw), server)
}

// aclAllows applies the ACL content to server, in the order m.room.server_acl gives:
//  1. (no ACL event: allow; the caller's case)
//  2. an IP literal is denied when allow_ip_literals is false;
//  3. a match in deny denies;
//  4. a match in allow allows;
//  5. otherwise deny.
//
// The port is not considered, and matching ignores case. Malformed fields take their
// defaults: allow_ip_literals true, allow and deny empty; entries that are not strings are
// skipped.
func aclAllows(content []byte, server spec.ServerName) bool {
	var acl struct {
		Allow           json.RawMessage `json:"allow"`
		Deny            json.RawMessage `json:"deny"`
		AllowIPLiterals json.RawMessage `json:"allow_ip_literals"`
	}
	_ = json.Unmarshal(content, &acl)
	host := strings.ToLower(serverHost(server))
	if string(acl.AllowIPLiterals) == "false" && isIPLiteral(host) {
		return false
	}
	for _, g := range globs(acl.Deny) {
		if globMatch(strings.ToLower(g), host) {
			return false
		}
	}
	for _, g := range globs(acl.Allow) {
		if globMatch(strings.ToLower(g), host) {
			return true
		}
	}
	return false
}

// globs returns the strings of a JSON array, nil when it is not one.
func globs(raw json.RawMessage) []string {
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return nil
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		var g string
		if json.Unmarshal(it, &g) == nil {
			out = append(out, g)
		}
	}
	return out
}

// serverHost returns a server name without its port: "example.org:8448" -> "example.org",
// "[::1]:8448" -> "[::1]".
func serverHost(server spec.ServerName) string {
	s := string(server)
	if strings.HasPrefix(s, "[") {
		if i := strings.IndexByte(s, ']'); i >= 0 {
			return s[:i+1]
		}
		return s
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		return s[:i]
	}
	return s
}

// isIPLiteral reports whether a server host is an IPv4 address or a bracketed IPv6 one.
func isIPLiteral(host string) bool {
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		return net.ParseIP(host[1:len(host)-1]) != nil
	}
	return net.ParseIP(host) != nil
}

// globMatch matches name against a glob of the appendices' "Glob-style matching": "*" is
// any run of characters (none included), "?" exactly one character, anything else itself.
// It backtracks only to the last "*", so it runs in time linear in len(glob)*len(name).
func globMatch(glob, name string) bool {
	g, n := []rune(glob), []rune(name)
	gi, ni := 0, 0
	star, mark := -1, 0 // the position after the last "*" seen, and where its run ends now
	for ni < len(n) {
		switch {
		case gi < len(g) && g[gi] == '*':
			star, mark = gi+1, ni
			gi++
		case gi < len(g) && (g[gi] == '?' || g[gi] == n[ni]):
			gi++
			ni++
		case star >= 0:
			mark++
			gi, ni = star, mark
		default:
			return false
		}
	}
	for gi < len(g) && g[gi] == '*' {
		gi++
	}
	return gi == len(g)
}
