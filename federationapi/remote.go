package federationapi

import (
	"context"
	"errors"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/roomserver"
)

// remote implements roomserver.Remote with the outbound federation client: every PDU it
// returns has passed checkPDU.
type remote struct {
	s *Server
}

var errRemoteNotYet = errors.New("not implemented yet")

func (r *remote) MissingEvents(ctx context.Context, server spec.ServerName, ver gomatrixserverlib.IRoomVersion, roomID string, earliest, latest []string, limit int, minDepth int64) ([]gomatrixserverlib.PDU, error) {
	return nil, errRemoteNotYet
}

func (r *remote) StateIDs(ctx context.Context, server spec.ServerName, roomID, eventID string) (state, authChain []string, err error) {
	return nil, nil, errRemoteNotYet
}

func (r *remote) Event(ctx context.Context, server spec.ServerName, ver gomatrixserverlib.IRoomVersion, eventID string) (gomatrixserverlib.PDU, error) {
	return nil, errRemoteNotYet
}

func (r *remote) EventAuth(ctx context.Context, server spec.ServerName, ver gomatrixserverlib.IRoomVersion, roomID, eventID string) ([]gomatrixserverlib.PDU, error) {
	return nil, errRemoteNotYet
}

func (r *remote) Backfill(ctx context.Context, server spec.ServerName, ver gomatrixserverlib.IRoomVersion, roomID string, from []string, limit int) ([]gomatrixserverlib.PDU, error) {
	return nil, errRemoteNotYet
}

func (r *remote) Join(ctx context.Context, servers []spec.ServerName, roomID, userID string, content map[string]any) (*roomserver.JoinResult, error) {
	return nil, errRemoteNotYet
}

func (r *remote) Invite(ctx context.Context, ver gomatrixserverlib.IRoomVersion, event gomatrixserverlib.PDU, strippedState []gomatrixserverlib.InviteStrippedState) (gomatrixserverlib.PDU, error) {
	return nil, errRemoteNotYet
}

func (r *remote) Leave(ctx context.Context, servers []spec.ServerName, roomID, userID string) (gomatrixserverlib.PDU, error) {
	return nil, errRemoteNotYet
}
