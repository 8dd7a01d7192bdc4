package storage

import (
	"context"
	"fmt"
)

// Presence fans out to every user sharing a room: each change of a user's presence lists
// their room peers, and each /sync woken by it keeps only the changes of its user's peers.
// When a few thousand members of one room come online together that is millions of
// peer checks, so they are answered from each room's joined members, cached like the
// memberships (under the same generation: any membership change drops both).

// joinedSet is the cached joined members of a room.
type joinedSet struct {
	list []string
	set  map[string]struct{}
}

// joinedOf returns the users joined to the room (do not modify the result).
func (db *DB) joinedOf(ctx context.Context, roomNID int64) (*joinedSet, error) {
	js, ok, gen, err := db.roomJoined.get(ctx, &db.Q, roomNID)
	if err != nil || ok {
		return js, err
	}
	list, err := db.Q.strings(ctx, `SELECT user_id FROM memberships WHERE room_nid = $1 AND membership = 'join'`, roomNID)
	if err != nil {
		return nil, fmt.Errorf("joined members of room %d: %w", roomNID, err)
	}
	js = &joinedSet{list: list, set: make(map[string]struct{}, len(list))}
	for _, u := range list {
		js.set[u] = struct{}{}
	}
	db.roomJoined.put(roomNID, js, gen)
	return js, nil
}

// maxLoadedRooms is how many rooms' members joinedRoomsOf reads into the cache at once; a
// user with more uncached rooms is answered by one statement over all of them instead.
const maxLoadedRooms = 4

// joinedRoomsOf returns the joined members of each room the user is joined to, from the
// cache; ok is false when more than load of them are not cached (none is read then).
func (db *DB) joinedRoomsOf(ctx context.Context, userID string, load int) (rooms []*joinedSet, ok bool, err error) {
	ms, err := db.AllMemberships(ctx, userID)
	if err != nil {
		return nil, false, err
	}
	var missing []int64
	for _, m := range ms {
		if m.Membership != "join" {
			continue
		}
		js, ok, _, err := db.roomJoined.get(ctx, &db.Q, m.RoomNID)
		if err != nil {
			return nil, false, err
		}
		if ok {
			rooms = append(rooms, js)
		} else if missing = append(missing, m.RoomNID); len(missing) > load {
			return nil, false, nil
		}
	}
	for _, nid := range missing {
		js, err := db.joinedOf(ctx, nid)
		if err != nil {
			return nil, false, err
		}
		rooms = append(rooms, js)
	}
	return rooms, true, nil
}

// RoomPeers returns the users joined to a room the user is joined to (the user among them).
func (db *DB) RoomPeers(ctx context.Context, userID string) ([]string, error) {
	rooms, ok, err := db.joinedRoomsOf(ctx, userID, maxLoadedRooms)
	if err != nil {
		return nil, err
	} else if !ok {
		return db.Q.RoomPeers(ctx, userID)
	}
	if len(rooms) == 1 {
		return append([]string(nil), rooms[0].list...), nil
	}
	seen := map[string]struct{}{}
	var out []string
	for _, js := range rooms {
		for _, u := range js.list {
			if _, ok := seen[u]; !ok {
				seen[u] = struct{}{}
				out = append(out, u)
			}
		}
	}
	return out, nil
}

// maxFilteredPresence bounds the stream range whose presence rows PresenceSince reads to keep
// the user's peers' among them; a longer range (an initial sync, a return after a long
// absence) is filtered by the database.
const maxFilteredPresence = 20000

// PresenceSince returns the presence changes in (since, upTo] of the user and of the users
// sharing a joined room with them, in stream order.
// The user's rooms must all be cached (a presence change of theirs put them there): a /sync
// reads no room's members, so that its statements do not grow with its rooms.
func (db *DB) PresenceSince(ctx context.Context, userID string, since, upTo int64) ([]*Presence, error) {
	var rooms []*joinedSet
	ok := false
	if upTo-since <= maxFilteredPresence {
		var err error
		if rooms, ok, err = db.joinedRoomsOf(ctx, userID, 0); err != nil {
			return nil, err
		}
	}
	if !ok {
		return db.Q.PresenceSince(ctx, userID, since, upTo)
	}
	ps, err := db.presences(ctx, `SELECT `+presenceColumns+` FROM presence p
		WHERE p.stream_pos > $1 AND p.stream_pos <= $2 ORDER BY p.stream_pos`, since, upTo)
	if err != nil || len(ps) == 0 {
		return nil, err
	}
	out := ps[:0]
	for _, p := range ps {
		if p.UserID == userID {
			out = append(out, p)
			continue
		}
		for _, js := range rooms {
			if _, ok := js.set[p.UserID]; ok {
				out = append(out, p)
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}
