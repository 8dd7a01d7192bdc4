package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"slices"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// AliasDeleted updates the room's m.room.canonical_alias after alias was deleted from the
// directory, as DELETE /directory/room/{roomAlias} allows ("Servers may choose to update the
// alt_aliases for the m.room.canonical_alias state event in the room when an alias is
// removed"): alias goes from alt_aliases, and from alias when it is the canonical alias, so
// that clients stop showing an alias that leads nowhere. The event is sent by userID, who
// deleted the alias. The spec recommends that the deletion succeeds "even if the user does
// not have permission to update the m.room.canonical_alias event", so a refusal by the auth
// rules (or a room the user is not in) is not an error.
func (s *Server) AliasDeleted(ctx context.Context, userID, roomID, alias string) error {
	r, err := s.lockRoom(ctx, roomID)
	if errors.Is(err, errUnknownRoom) {
		return nil
	} else if err != nil {
		return err
	}
	defer r.unlock()
	evs, err := s.stateEvents(ctx, r.version, r.state, []storage.StateKey{{Type: "m.room.canonical_alias"}})
	if err != nil || len(evs) == 0 {
		return err
	}
	var content map[string]any
	if err := json.Unmarshal(evs[0].Content(), &content); err != nil {
		return nil // not an object: nothing we can edit
	}
	changed := false
	if content["alias"] == alias {
		delete(content, "alias")
		changed = true
	}
	if alts, ok := content["alt_aliases"].([]any); ok {
		kept := slices.DeleteFunc(slices.Clone(alts), func(a any) bool { return a == alias })
		if len(kept) != len(alts) {
			content["alt_aliases"] = kept
			changed = true
		}
	}
	if !changed {
		return nil
	}
	raw, err := json.Marshal(content)
	if err != nil {
		return err
	}
	empty := ""
	_, err = s.submit(ctx, r, eventRequest{Sender: userID, Type: "m.room.canonical_alias", StateKey: &empty, Content: raw})
	var me spec.MatrixError
	if errors.As(err, &me) && me.ErrCode == spec.ErrorForbidden {
		return nil
	}
	return err
}
