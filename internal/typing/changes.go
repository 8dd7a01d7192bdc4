package typing

// ChangedRooms returns the rooms whose set of typers changed after since, each with its
// current typers, and the newest position: what application services receiving ephemeral
// data are sent (they follow every room, not one user's).
func (t *Typing) ChangedRooms(since int64) (map[string][]string, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string][]string{}
	for roomID, r := range t.rooms {
		if r.pos <= since {
			continue
		}
		users := make([]string, 0, len(r.users))
		for u := range r.users {
			users = append(users, u)
		}
		out[roomID] = users
	}
	return out, t.pos
}
