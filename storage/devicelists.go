package storage

import (
	"context"
	"fmt"
	"slices"
)

// DeviceListChanged records that userID's devices or keys changed and returns the new
// device_lists stream position.
func (tx *Tx) DeviceListChanged(ctx context.Context, userID string) (int64, error) {
	pos, err := tx.NextStreamPos(ctx, StreamDeviceLists)
	if err != nil {
		return 0, err
	}
	_, err = tx.exec(ctx, `
		INSERT INTO device_list_changes (user_id, stream_pos) VALUES ($1, $2)
		ON CONFLICT (user_id) DO UPDATE SET stream_pos = $2`, userID, pos)
	if err != nil {
		return 0, fmt.Errorf("record device list change %s: %w", userID, err)
	}
	return pos, nil
}

// UsersSharingRooms returns the users joined to a room userID is joined to, userID included
// when it is joined anywhere: those who see userID's device list changes.
func (q *Q) UsersSharingRooms(ctx context.Context, userID string) ([]string, error) {
	return q.strings(ctx, `
		SELECT DISTINCT b.user_id FROM memberships a JOIN memberships b ON b.room_nid = a.room_nid
		WHERE a.user_id = $1 AND a.membership = 'join' AND b.membership = 'join'`, userID)
}

// sharingRoomWith returns those of candidates who are joined to a room userID is joined to.
func (q *Q) sharingRoomWith(ctx context.Context, userID string, candidates []string) (map[string]bool, error) {
	out := map[string]bool{}
	const batch = 500
	for len(candidates) > 0 {
		n := min(len(candidates), batch)
		args := []any{userID}
		for _, c := range candidates[:n] {
			args = append(args, c)
		}
		users, err := q.strings(ctx, `
			SELECT DISTINCT b.user_id FROM memberships a JOIN memberships b ON b.room_nid = a.room_nid
			WHERE a.user_id = $1 AND a.membership = 'join' AND b.membership = 'join'
			AND b.user_id IN (`+placeholders(2, n)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("select users sharing a room with %s: %w", userID, err)
		}
		for _, u := range users {
			out[u] = true
		}
		candidates = candidates[n:]
	}
	return out, nil
}

// DeviceListChanges answers the device_lists section of /sync and /keys/changes for userID
// between two positions of the room event stream (fromPDU, toPDU] and of the device_lists
// stream (fromDL, toDL]. changed lists the users sharing a room with userID (or userID itself)
// whose devices or keys changed, and those who started sharing a room with userID (a join
// by them, or by userID into a room they are in, which lists userID too). left lists those who stopped sharing any
// room with userID after a leave or ban.
func (q *Q) DeviceListChanges(ctx context.Context, userID string, fromPDU, toPDU, fromDL, toDL int64) (changed, left []string, err error) {
	changedSet := map[string]bool{}
	if toDL > fromDL {
		users, err := q.strings(ctx, `
			SELECT c.user_id FROM device_list_changes c
			WHERE c.stream_pos > $2 AND c.stream_pos <= $3 AND (c.user_id = $1 OR EXISTS (
				SELECT 1 FROM memberships a JOIN memberships b ON b.room_nid = a.room_nid
				WHERE a.user_id = $1 AND a.membership = 'join' AND b.user_id = c.user_id AND b.membership = 'join'))`,
			userID, fromDL, toDL)
		if err != nil {
			return nil, nil, fmt.Errorf("select device list changes for %s: %w", userID, err)
		}
		for _, u := range users {
			changedSet[u] = true
		}
	}
	var leftSet map[string]bool
	if toPDU > fromPDU {
		joined, parted, err := q.membershipChanges(ctx, userID, fromPDU, toPDU)
		if err != nil {
			return nil, nil, err
		}
		candidates := make([]string, 0, len(joined)+len(parted))
		for u := range joined {
			candidates = append(candidates, u)
		}
		for u := range parted {
			candidates = append(candidates, u)
		}
		sharing, err := q.sharingRoomWith(ctx, userID, candidates)
		if err != nil {
			return nil, nil, err
		}
		leftSet = map[string]bool{}
		for u := range joined {
			if sharing[u] {
				changedSet[u] = true
			}
		}
		for u := range parted {
			if !sharing[u] && u != userID {
				leftSet[u] = true
				delete(changedSet, u)
			}
		}
	}
	return sortedKeys(changedSet), sortedKeys(leftSet), nil
}

// membershipChanges returns, from the membership changes in (fromPDU, toPDU] of the rooms
// userID has a membership in, the users who may have started sharing a room with userID
// (joined) and those who may have stopped (parted). Other users' invites and knocks change
// nothing.
func (q *Q) membershipChanges(ctx context.Context, userID string, fromPDU, toPDU int64) (joined, parted map[string]bool, err error) {
	rows, err := q.query(ctx, `
		SELECT b.room_nid, b.user_id, b.membership, a.membership FROM memberships a JOIN memberships b ON b.room_nid = a.room_nid
		WHERE a.user_id = $1 AND b.event_nid > $2 AND b.event_nid <= $3`, userID, fromPDU, toPDU)
	if err != nil {
		return nil, nil, fmt.Errorf("select membership changes for %s: %w", userID, err)
	}
	defer rows.Close()
	joined, parted = map[string]bool{}, map[string]bool{}
	own := map[int64]string{} // rooms where userID's own membership changed
	for rows.Next() {
		var roomNID int64
		var user, membership, mine string
		if err := rows.Scan(&roomNID, &user, &membership, &mine); err != nil {
			return nil, nil, err
		}
		switch {
		case user == userID:
			own[roomNID] = membership
		case mine != "join":
		case membership == "join":
			joined[user] = true
		case membership == "leave" || membership == "ban":
			parted[user] = true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	for roomNID, membership := range own {
		if membership != "join" && membership != "leave" && membership != "ban" {
			continue
		}
		members, err := q.strings(ctx, `SELECT user_id FROM memberships WHERE room_nid = $1 AND membership = 'join'`, roomNID)
		if err != nil {
			return nil, nil, fmt.Errorf("select members of room %d: %w", roomNID, err)
		}
		for _, m := range members {
			switch {
			case membership == "join":
				// userID among them: a client joining a room (a remote one above all, whose
				// members' devices its server has never tracked) re-queries every member,
				// its own user included, as Synapse's "newly joined" users do.
				joined[m] = true
			case m != userID:
				parted[m] = true
			}
		}
	}
	return joined, parted, nil
}

func sortedKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
