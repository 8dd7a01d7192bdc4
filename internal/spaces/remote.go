package spaces

// Hierarchy is the answer of the Server-Server GET /hierarchy/{roomId}
// (server-server/space_hierarchy.yaml): the room with its children_state, the children the
// requesting server may peek or join, with theirs, and the children it may not.
type Hierarchy struct {
	Room                 map[string]any   `json:"room"`
	Children             []map[string]any `json:"children"`
	InaccessibleChildren []string         `json:"inaccessible_children"`
}

// FromChunk reads one room of another server's /hierarchy answer: its summary fields and
// its children from children_state. Entries of children_state that are not m.space.child
// events with a via are skipped, as are fields that depend on the asker (membership). It is
// false when chunk has no room ID.
func FromChunk(chunk map[string]any) (*Summary, bool) {
	if id, _ := chunk["room_id"].(string); id == "" {
		return nil, false
	}
	out := &Summary{Chunk: make(map[string]any, len(chunk))}
	for k, v := range chunk {
		if k != "children_state" && k != "membership" {
			out.Chunk[k] = v
		}
	}
	states, _ := chunk["children_state"].([]any)
	for _, st := range states {
		ev, _ := st.(map[string]any)
		stateKey, _ := ev["state_key"].(string)
		content, _ := ev["content"].(map[string]any)
		sender, _ := ev["sender"].(string)
		ts, _ := ev["origin_server_ts"].(float64)
		if ev["type"] != "m.space.child" || content == nil {
			continue
		}
		if c, ok := child(stateKey, content, sender, int64(ts)); ok {
			out.Children = append(out.Children, c)
		}
	}
	return out, true
}
