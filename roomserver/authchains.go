package roomserver

import (
	"context"
	"errors"
	"sort"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// maxAuthChainFetches is the most GET /event_auth requests one /state_ids answer may lead to.
const maxAuthChainFetches = 20

// completeAuthChains fetches, with GET /event_auth from server, the auth chains of the events
// of pdus that storeOutliers left out because their auth events were unknown, and stores
// them. The auth_chain_ids of a /state_ids answer must be "the full set of authorisation
// events that make up the state of the room, and their authorisation events, recursively"
// (server-server API), but a server whose answer falls short (an invite a join cites, say)
// would otherwise have state events dropped from the state before the gap: the state
// resolution that follows would start from a state no server has, and reset members or
// power levels. Each request also brings in the chains of the events after it, so the left-out
// events are taken oldest first and checked again before each request.
func (s *Server) completeAuthChains(ctx context.Context, r *room, in remoteInput, server spec.ServerName, pdus []gomatrixserverlib.PDU) error {
	sorted := append([]gomatrixserverlib.PDU(nil), pdus...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Depth() < sorted[j].Depth() })
	fetches := 0
	for _, p := range sorted {
		if p.RoomID().String() != r.id {
			continue
		}
		if _, err := s.db.Event(ctx, p.EventID()); err == nil {
			continue
		} else if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		if fetches == maxAuthChainFetches {
			s.log.Warn("state events left out: too many incomplete auth chains", "origin", server, "room_id", r.id, "event_id", p.EventID())
			return nil
		}
		fetches++
		chain, err := s.remote.EventAuth(ctx, server, r.version, r.id, p.EventID())
		if err != nil {
			s.log.Warn("state event left out: its auth chain could not be fetched", "origin", server, "room_id", r.id, "event_id", p.EventID(), "err", err)
			continue
		}
		if !in.spend(len(chain)) {
			return rejected("the auth chains of the state before %s are too large to fetch", in.pdu.EventID())
		}
		// The chain first, then every event still left out, which it may complete.
		if err := s.storeOutliers(ctx, r, append(chain, sorted...)); err != nil {
			return err
		}
	}
	return nil
}
