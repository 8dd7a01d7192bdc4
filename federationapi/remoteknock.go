package federationapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// Knock implements roomserver.Remote: make_knock and send_knock through the first of servers
// that completes them. It returns the signed knock and the stripped state the resident
// server answered with (knock_room_state).
func (r *remote) Knock(ctx context.Context, servers []spec.ServerName, roomID, userID string, content map[string]any) (gomatrixserverlib.PDU, []gomatrixserverlib.InviteStrippedState, error) {
	lastErr := errors.New("no server to knock through")
	for _, server := range servers {
		if server == r.origin() {
			continue
		}
		pdu, state, err := r.knockVia(ctx, server, roomID, userID, content)
		if err == nil {
			return pdu, state, nil
		}
		r.s.log.Warn("knock through another server failed", "destination", string(server), "room_id", roomID, "user_id", userID, "err", err)
		lastErr = err
	}
	return nil, nil, lastErr
}

// knockVia knocks through one server: the template must be an m.room.member knock of userID
// in roomID, in a room version that has knocking.
func (r *remote) knockVia(ctx context.Context, server spec.ServerName, roomID, userID string, content map[string]any) (gomatrixserverlib.PDU, []gomatrixserverlib.InviteStrippedState, error) {
	what := fmt.Sprintf("knock on %s through %s", roomID, server)
	res, err := r.s.client.fc.MakeKnock(ctx, r.origin(), server, roomID, userID, knockVersions())
	if err != nil {
		return nil, nil, remoteError(what, err)
	}
	ver, err := gomatrixserverlib.GetRoomVersion(res.RoomVersion)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	proto := res.KnockEvent
	var tmpl struct {
		Membership string `json:"membership"`
	}
	_ = json.Unmarshal(proto.Content, &tmpl)
	if proto.Type != spec.MRoomMember || proto.RoomID != roomID || proto.SenderID != userID ||
		proto.StateKey == nil || *proto.StateKey != userID || tmpl.Membership != spec.Knock {
		return nil, nil, fmt.Errorf("%s: the template is not a knock of %s", what, userID)
	}
	content["membership"] = spec.Knock
	raw, err := json.Marshal(content)
	if err != nil {
		return nil, nil, err
	}
	proto.Content, proto.Redacts = raw, ""
	if err := proto.SetUnsigned(struct{}{}); err != nil {
		return nil, nil, err
	}
	pdu, err := ver.NewEventBuilderFromProtoEvent(&proto).Build(r.s.cfg.Now(), r.origin(), r.s.cfg.KeyID, r.s.cfg.PrivateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: build: %w", what, err)
	}
	sent, err := r.s.client.fc.SendKnock(ctx, r.origin(), server, pdu)
	if err != nil {
		return nil, nil, remoteError(what, err)
	}
	return pdu, sent.KnockRoomState, nil
}

// knockVersions lists the room versions this server supports; the resident server refuses
// a knock on a room whose version has no knocking.
func knockVersions() []gomatrixserverlib.RoomVersion {
	var out []gomatrixserverlib.RoomVersion
	for v := range gomatrixserverlib.RoomVersions() {
		out = append(out, v)
	}
	return out
}
