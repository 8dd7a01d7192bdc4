package roomserver

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// Backfill fetches history older than the oldest events this server has of a room (the
// room's history before this server joined it, typically) from the other servers in the
// room (GET /backfill), when /messages has run out of local events. Each event is checked
// against its auth events and stored as backfilled: shown by /messages, not by /sync. The
// state before a backfilled event is not fetched: it is taken to be the state before the
// oldest event this server had, which is what history visibility is judged by. It returns
// how many events were stored.
//
// Servers cap what one /backfill answer holds (and a server that joined late has only part
// of the history), so it asks again from the new oldest events until limit events are
// stored, the room's beginning is reached, or no server has more: a client's page must not
// end early while history goes on.
func (s *Server) Backfill(ctx context.Context, roomID string, limit int) (int, error) {
	if s.remote == nil || limit <= 0 {
		return 0, nil
	}
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return 0, err
	}
	defer r.unlock()
	if !s.hasState(r) {
		return 0, nil
	}
	total := 0
	for round := 0; round < maxBackfillRounds && total < limit; round++ {
		n, err := s.backfillOnce(ctx, r, limit-total)
		total += n
		if err != nil || n == 0 {
			return total, err
		}
	}
	return total, nil
}

// maxBackfillRounds bounds the /backfill requests of one Backfill: a server answering one
// event at a time cannot keep a client's request going for long.
const maxBackfillRounds = 20

// backfillOnce asks the other servers once for the history before the oldest events this
// server has of r (locked), and returns how many events it stored.
func (s *Server) backfillOnce(ctx context.Context, r *room, limit int) (int, error) {
	oldest, err := s.db.RoomEventsTopo(ctx, r.nid, storage.TopoPos{}, nil, false, 8)
	if err != nil || len(oldest) == 0 {
		return 0, err
	}
	if oldest[0].Type == spec.MRoomCreate {
		return 0, nil // the room's beginning is here already
	}
	var from []string
	seen := map[string]bool{}
	for _, ev := range oldest {
		m, err := s.pdusByNID(ctx, r.version, []int64{ev.NID})
		if err != nil {
			return 0, err
		}
		for _, id := range m[ev.NID].PrevEventIDs() {
			if seen[id] {
				continue
			}
			seen[id] = true
			if known, err := s.db.Event(ctx, id); errors.Is(err, storage.ErrNotFound) || (err == nil && !known.Visible()) {
				from = append(from, id)
			}
		}
	}
	if len(from) == 0 {
		return 0, nil
	}
	stateBefore := oldest[0].StateBeforeNID
	var lastErr error
	for _, server := range s.historyServers(ctx, r) {
		pdus, err := s.remote.Backfill(ctx, server, r.version, r.id, from, limit)
		if err != nil {
			lastErr = err
			continue
		}
		// A server that joined after these events has none of them: ask the next.
		if n, err := s.storeBackfilled(ctx, r, server, reachable(pdus, from, limit), stateBefore); err != nil || n > 0 {
			return n, err
		}
	}
	if lastErr != nil {
		s.log.Warn("backfill failed", "room_id", r.id, "err", lastErr)
	}
	return 0, nil
}

// historyServers returns the other servers with joined members in r (locked), those likeliest
// to hold the room's early history first: the room creator's server, then by name.
func (s *Server) historyServers(ctx context.Context, r *room) []spec.ServerName {
	var servers []spec.ServerName
	for u, m := range r.members {
		if m == spec.Join && !s.isLocal(u) {
			servers = append(servers, spec.ServerName(serverOf(u)))
		}
	}
	servers = dedupServers(servers, s.cfg.ServerName)
	creator := spec.ServerName(serverOf(s.creatorOf(ctx, r)))
	sort.Slice(servers, func(i, j int) bool {
		if (servers[i] == creator) != (servers[j] == creator) {
			return servers[i] == creator
		}
		return servers[i] < servers[j]
	})
	return servers
}

// reachable returns, of a /backfill answer, the events reachable from the events asked for
// through prev_events, at most limit of them: the history this server asked for and nothing
// else (event IDs being hashes of the events, another server cannot make up ancestors).
func reachable(pdus []gomatrixserverlib.PDU, from []string, limit int) []gomatrixserverlib.PDU {
	byID := make(map[string]gomatrixserverlib.PDU, len(pdus))
	for _, p := range pdus {
		byID[p.EventID()] = p
	}
	seen := map[string]bool{}
	queue := append([]string(nil), from...)
	var out []gomatrixserverlib.PDU
	for len(queue) > 0 && len(out) < limit {
		id := queue[0]
		queue = queue[1:]
		p, ok := byID[id]
		if !ok || seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, p)
		queue = append(queue, p.PrevEventIDs()...)
	}
	return out
}

// creatorOf returns the sender of the room's create event.
func (s *Server) creatorOf(ctx context.Context, r *room) string {
	create, err := s.roomCreateEvent(ctx, r)
	if err != nil || create == nil {
		return ""
	}
	return string(create.SenderID())
}

// storeBackfilled checks backfilled events against their auth events, oldest first, and
// stores the accepted ones with status backfilled.
func (s *Server) storeBackfilled(ctx context.Context, r *room, server spec.ServerName, pdus []gomatrixserverlib.PDU, stateBefore int64) (int, error) {
	sort.SliceStable(pdus, func(i, j int) bool { return pdus[i].Depth() < pdus[j].Depth() })
	stored := 0
	for _, p := range pdus {
		if p.RoomID().String() != r.id {
			continue
		}
		known, err := s.db.Event(ctx, p.EventID())
		if err == nil && known.Status != storage.StatusOutlier {
			continue // held already (in the DAG, soft-failed or rejected): never re-judged here
		} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return stored, err
		}
		authPDUs, err := s.authEventsOf(ctx, r, server, p)
		var rej *RejectedError
		if errors.As(err, &rej) {
			continue
		} else if err != nil {
			return stored, err
		}
		if err := s.allowedBy(r, p, authPDUs); err != nil {
			_ = s.storeRejected(ctx, r, p, fmt.Sprintf("backfilled event %s fails auth: %v", p.EventID(), err))
			continue
		}
		if known != nil {
			// Known as an outlier: it becomes history.
			if err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
				return tx.SetEventStatus(ctx, known.NID, storage.StatusBackfilled, stateBefore)
			}); err != nil {
				return stored, err
			}
			stored++
			continue
		}
		if err := s.insertBare(ctx, r, p, storage.StatusBackfilled, stateBefore); err != nil {
			return stored, err
		}
		stored++
	}
	return stored, nil
}
