package appservice

import (
	"context"
	"errors"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/lattice-chat/lattice/storage"
)

// interesting returns the events the service is interested in (Application Service API,
// "Registration"): those whose sender, or whose member event's target, is a local user of
// its namespaces (or its sender), and every event of a room whose ID is in its rooms
// namespaces, which has an alias in its aliases namespaces, or where one of its users is
// joined. A room's interest is worked out once per batch.
func (snd *sender) interesting(ctx context.Context, evs []*storage.Event, roomWanted map[string]bool) ([]roomEvent, error) {
	roomIDs := map[int64]string{}
	var out []roomEvent
	for _, ev := range evs {
		roomID, ok := roomIDs[ev.RoomNID]
		if !ok {
			var err error
			if roomID, err = snd.s.db.RoomIDByNID(ctx, ev.RoomNID); err != nil {
				return nil, err
			}
			roomIDs[ev.RoomNID] = roomID
		}
		if snd.ownsLocal(ev.Sender) || (ev.Type == "m.room.member" && snd.ownsLocal(gjson.GetBytes(ev.JSON, "state_key").String())) {
			out = append(out, roomEvent{ev, roomID})
			continue
		}
		wanted, err := snd.roomWanted(ctx, roomWanted, ev.RoomNID, roomID)
		if err != nil {
			return nil, err
		}
		if wanted {
			out = append(out, roomEvent{ev, roomID})
		}
	}
	return out, nil
}

// ownsLocal reports whether userID is a local user the service owns: the users namespaces
// cover local users only.
func (snd *sender) ownsLocal(userID string) bool {
	return strings.HasSuffix(userID, ":"+snd.s.serverName) && snd.svc.OwnsUser(userID)
}

// roomWanted reports whether the service is interested in every event of the room,
// remembering the answer in cache (one batch's); roomNID 0 is looked up.
func (snd *sender) roomWanted(ctx context.Context, cache map[string]bool, roomNID int64, roomID string) (bool, error) {
	if w, ok := cache[roomID]; ok {
		return w, nil
	}
	w, err := snd.roomInteresting(ctx, roomNID, roomID)
	if err == nil {
		cache[roomID] = w
	}
	return w, err
}

func (snd *sender) roomInteresting(ctx context.Context, roomNID int64, roomID string) (bool, error) {
	if snd.svc.InRooms(roomID) {
		return true, nil
	}
	if roomNID == 0 {
		room, err := snd.s.db.Room(ctx, roomID)
		if errors.Is(err, storage.ErrNotFound) {
			return false, nil
		} else if err != nil {
			return false, err
		}
		roomNID = room.NID
	}
	if len(snd.svc.aliases) > 0 {
		aliases, err := snd.s.db.RoomAliases(ctx, roomID)
		if err != nil {
			return false, err
		}
		for _, a := range aliases {
			if snd.svc.InAliases(a) {
				return true, nil
			}
		}
	}
	members, err := snd.s.db.RoomMembers(ctx, roomNID, "join")
	if err != nil {
		return false, err
	}
	for _, m := range members {
		if snd.ownsLocal(m.UserID) {
			return true, nil
		}
	}
	return false, nil
}
