package roomserver

import (
	"context"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// Remote is what the roomserver asks of other servers when it needs events it does not have:
// federationapi implements it over the Server-Server API. Every PDU it returns has passed the
// spec's first checks on receipt (a valid PDU of the room version, valid signatures of the
// sending and origin servers, a content hash that matches or, when it does not, the event
// redacted), so the roomserver only has the auth checks left to do.
type Remote interface {
	// MissingEvents asks server for events of the room that are ancestors of latest and not
	// ancestors of earliest (POST /get_missing_events), oldest first.
	MissingEvents(ctx context.Context, server spec.ServerName, ver gomatrixserverlib.IRoomVersion, roomID string, earliest, latest []string, limit int, minDepth int64) ([]gomatrixserverlib.PDU, error)
	// StateIDs asks server for the IDs of the room state before eventID and of its auth
	// chain (GET /state_ids).
	StateIDs(ctx context.Context, server spec.ServerName, roomID, eventID string) (state, authChain []string, err error)
	// Event fetches one event of a room of version ver (GET /event).
	Event(ctx context.Context, server spec.ServerName, ver gomatrixserverlib.IRoomVersion, eventID string) (gomatrixserverlib.PDU, error)
	// EventAuth fetches the auth chain of an event (GET /event_auth).
	EventAuth(ctx context.Context, server spec.ServerName, ver gomatrixserverlib.IRoomVersion, roomID, eventID string) ([]gomatrixserverlib.PDU, error)
	// Backfill asks server for up to limit events before (and including) from, in any order
	// (GET /backfill).
	Backfill(ctx context.Context, server spec.ServerName, ver gomatrixserverlib.IRoomVersion, roomID string, from []string, limit int) ([]gomatrixserverlib.PDU, error)
	// Join joins userID to a room hosted elsewhere through the first of servers that
	// answers (make_join, then send_join), and returns the join event and the room state
	// and auth chain from the send_join response, all checked.
	Join(ctx context.Context, servers []spec.ServerName, roomID, userID string, content map[string]any) (*JoinResult, error)
	// Invite asks the invitee's server to sign an invite event (PUT /invite, v2) and returns
	// the event with its signature.
	Invite(ctx context.Context, ver gomatrixserverlib.IRoomVersion, event gomatrixserverlib.PDU, strippedState []gomatrixserverlib.InviteStrippedState) (gomatrixserverlib.PDU, error)
	// Leave leaves (or rejects an invite to) a room this server is not in, through the first of
	// servers that answers (make_leave, then send_leave).
	Leave(ctx context.Context, servers []spec.ServerName, roomID, userID string) (gomatrixserverlib.PDU, error)
	// Knock knocks on a room this server is not in, through the first of servers that
	// answers (make_knock, then send_knock), and returns the knock event and the stripped
	// state of the room.
	Knock(ctx context.Context, servers []spec.ServerName, roomID, userID string, content map[string]any) (gomatrixserverlib.PDU, []gomatrixserverlib.InviteStrippedState, error)
	// PolicySign asks a room's policy server to sign an event (POST /_matrix/policy/v1/sign)
	// and returns its ed25519:policy_server signature; a refusal is a spec.MatrixError.
	PolicySign(ctx context.Context, server spec.ServerName, event gomatrixserverlib.PDU) (string, error)
	// TimestampToEvent asks server for the event of the room nearest to ts, at or after it
	// (forwards) or at or before it (GET /timestamp_to_event).
	TimestampToEvent(ctx context.Context, server spec.ServerName, roomID string, ts int64, forwards bool) (eventID string, originTS int64, err error)
	// QueryAlias resolves a room alias of another server (GET /query/directory) into the
	// room ID and the servers that can be joined through.
	QueryAlias(ctx context.Context, alias string) (roomID string, servers []spec.ServerName, err error)
}

// JoinResult is a completed join through another server.
type JoinResult struct {
	Version   gomatrixserverlib.IRoomVersion
	Event     gomatrixserverlib.PDU   // the join event, as the resident server accepted it
	State     []gomatrixserverlib.PDU // the room state before the join event
	AuthChain []gomatrixserverlib.PDU // the auth chain of State and of the join event
	Via       spec.ServerName         // the server that answered
	// MembersOmitted reports a partial state join (send_join with omit_members, MSC3706):
	// State lacks membership events, and ServersInRoom lists the servers that had joined
	// members before the join.
	MembersOmitted bool
	ServersInRoom  []string
}

// SetRemote gives the roomserver its way to other servers; without it (federation off) the
// roomserver knows only local rooms.
func (s *Server) SetRemote(remote Remote) { s.remote = remote }

// MembershipTemplate is the answer to make_join, make_leave and make_knock: an unsigned event
// for the remote user to sign and send back.
type MembershipTemplate struct {
	Version gomatrixserverlib.RoomVersion
	Event   gomatrixserverlib.ProtoEvent
}

// StateAndAuth is the room state before an event and its auth chain (send_join's answer).
type StateAndAuth struct {
	State     []gomatrixserverlib.PDU
	AuthChain []gomatrixserverlib.PDU
	// MembersOmitted reports that State leaves out membership events (send_join with
	// omit_members); ServersInRoom then lists the servers with joined members before the join.
	MembersOmitted bool
	ServersInRoom  []string
}
