package roomserver

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// The joining side of partial state joins (MSC3706, MSC3902). A join whose send_join answer
// omitted the members (JoinResult.MembersOmitted) is stored as usual with the partial state,
// and the room is recorded in partial_state_rooms. The room is usable at once: local users
// send and receive, events go to every server of servers_in_room, and remote events are
// authorised against the partial state as far as it goes (allowedByKnownState). Meanwhile
// a background resync fetches the full state before the join event from the server that
// answered, failing over to the others of servers_in_room:
//
//  1. GET /state_ids at the join event: the IDs of the state and of its auth chain;
//  2. the events this server lacks, by batches: fetched (GET /event, a few at a time),
//     stored as outliers, so that memory holds one batch of events at a time;
//  3. each state event checked against its auth events, then the full state completes the
//     room's: every whole snapshot of the room and the current state gain the state keys
//     they lack (the partial state's keys and every change since the join stay), the
//     memberships follow, and the room's partial state row is deleted.
//
// The row survives a restart: StartResyncs resumes every partial room. While a room is
// partial it refuses make_join, send_join, make_knock and send_knock from other servers
// (404 M_NOT_FOUND, as Synapse answers), and /members waits for the resync (WaitFullState).

const (
	resyncBatchSize   = 500             // events fetched and stored per batch
	resyncFetchers    = 8               // GET /event requests in flight per batch
	resyncFillChunk   = 1000            // state keys completed per transaction
	resyncMaxBackoff  = 5 * time.Minute // between failed attempts
	resyncFirstBackof = 2 * time.Second // after the first failed attempt
	fullStatePoll     = 200 * time.Millisecond
)

// resyncs are the running resyncs of partial state rooms.
type resyncs struct {
	mu      sync.Mutex // guards every field below
	ctx     context.Context
	cancel  context.CancelFunc
	running map[string]bool // room IDs
	wg      sync.WaitGroup
}

// refusePartial refuses the joins and knocks of other servers into room r (locked) while
// its state is partial: this server cannot answer them with the room's state.
func refusePartial(r *room, membership string) error {
	if r.partial != nil && membership != spec.Leave {
		return spec.NotFound("this server has only partial state for the room; try another server")
	}
	return nil
}

// StartResyncs resumes the resync of every room whose state is partial (after a restart).
// The resyncs stop when ctx ends or CloseResyncs is called.
func (s *Server) StartResyncs(ctx context.Context) error {
	s.resyncs.mu.Lock()
	if s.resyncs.ctx == nil {
		s.resyncs.ctx, s.resyncs.cancel = context.WithCancel(ctx)
	}
	s.resyncs.mu.Unlock()
	rows, err := s.db.PartialStateRooms(ctx)
	if err != nil {
		return err
	}
	for _, p := range rows {
		s.log.Info("resuming the resync of a partial state room", "room_id", p.RoomID, "attempts", p.Attempts)
		s.startResync(p.RoomID)
	}
	return nil
}

// CloseResyncs stops the running resyncs and waits for them; the rooms stay partial until
// the next start resumes them.
func (s *Server) CloseResyncs() error {
	s.resyncs.mu.Lock()
	if s.resyncs.cancel != nil {
		s.resyncs.cancel()
	}
	s.resyncs.mu.Unlock()
	s.resyncs.wg.Wait()
	return nil
}

// startResync starts the resync of roomID unless one runs.
func (s *Server) startResync(roomID string) {
	rs := &s.resyncs
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.ctx == nil {
		rs.ctx, rs.cancel = context.WithCancel(context.Background())
	}
	if rs.ctx.Err() != nil || rs.running[roomID] {
		return
	}
	if rs.running == nil {
		rs.running = map[string]bool{}
	}
	rs.running[roomID] = true
	rs.wg.Add(1)
	go func(ctx context.Context) {
		defer rs.wg.Done()
		defer func() {
			rs.mu.Lock()
			delete(rs.running, roomID)
			rs.mu.Unlock()
		}()
		s.resyncLoop(ctx, roomID)
	}(rs.ctx)
}

// resyncLoop retries the resync of roomID, with a growing pause, until it completes, the
// room is no longer partial, or ctx ends.
func (s *Server) resyncLoop(ctx context.Context, roomID string) {
	backoff := resyncFirstBackof
	for ctx.Err() == nil {
		room, err := s.db.Room(ctx, roomID)
		if err != nil {
			s.log.Warn("resync: room unreadable", "room_id", roomID, "err", err)
			return
		}
		p, err := s.db.PartialStateRoom(ctx, room.NID)
		if errors.Is(err, storage.ErrNotFound) {
			return
		} else if err == nil {
			start := s.now()
			if err = s.resync(ctx, p, room.Version); err == nil {
				s.log.Info("partial state resync complete", "room_id", roomID, "duration", s.now().Sub(start))
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("partial state resync failed; will retry", "room_id", roomID, "retry_in", backoff, "err", err)
		if room != nil {
			_ = s.db.RecordPartialStateError(ctx, room.NID, err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, resyncMaxBackoff)
	}
}

// resync runs one attempt: through the server that answered send_join, then through the
// others of servers_in_room.
func (s *Server) resync(ctx context.Context, p *storage.PartialStateRoom, version string) error {
	if s.remote == nil {
		return errors.New("federation is off")
	}
	ver, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(version))
	if err != nil {
		return err
	}
	servers := []spec.ServerName{spec.ServerName(p.JoinedVia)}
	for _, srv := range p.ServersInRoom {
		servers = append(servers, spec.ServerName(srv))
	}
	var errs []error
	for _, server := range dedupServers(servers, s.cfg.ServerName) {
		full, err := s.fetchFullState(ctx, p, ver, server)
		if err == nil {
			return s.completeState(ctx, p, full)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.log.Warn("resync through a server failed", "room_id", p.RoomID, "destination", string(server), "err", err)
		errs = append(errs, fmt.Errorf("%s: %w", server, err))
	}
	if len(errs) == 0 {
		return errors.New("no server to resync from")
	}
	return errors.Join(errs...)
}

// fetchFullState fetches from server the state before the join event of p, storing the
// events this server lacks as outliers by batches, and returns it (state key NID -> event
// NID) with the events that fail auth against their auth events left out.
func (s *Server) fetchFullState(ctx context.Context, p *storage.PartialStateRoom, ver gomatrixserverlib.IRoomVersion, server spec.ServerName) (map[int64]int64, error) {
	stateIDs, authIDs, err := s.remote.StateIDs(ctx, server, p.RoomID, p.JoinEventID)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(stateIDs)+len(authIDs))
	seen := make(map[string]bool, len(stateIDs)+len(authIDs))
	for _, id := range append(authIDs, stateIDs...) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	seen = nil
	batch := s.cfg.ResyncBatchSize
	if batch <= 0 {
		batch = resyncBatchSize
	}
	for start := 0; start < len(ids); start += batch {
		if s.cfg.ResyncBatchDelay > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(s.cfg.ResyncBatchDelay):
			}
		}
		if err := s.storeMissing(ctx, p, ver, server, ids[start:min(start+batch, len(ids))]); err != nil {
			return nil, err
		}
	}
	create, err := s.db.CurrentStateEvent(ctx, p.RoomNID, storage.StateKey{Type: spec.MRoomCreate})
	if err != nil {
		return nil, fmt.Errorf("create event: %w", err)
	}
	createPDUs, err := s.pdusByNID(ctx, ver, []int64{create.NID})
	if err != nil {
		return nil, err
	}
	full := make(map[int64]int64, len(stateIDs))
	for _, id := range stateIDs {
		ev, err := s.db.Event(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			continue // left out by storeMissing
		} else if err != nil {
			return nil, fmt.Errorf("state event %s: %w", id, err)
		}
		if ev.RoomNID != p.RoomNID || !ev.IsState() || ev.Status == storage.StatusRejected {
			continue
		}
		if err := s.checkStoredAuth(ctx, ver, ev, createPDUs[create.NID]); err != nil {
			s.log.Warn("resync: a state event fails auth; left out", "room_id", p.RoomID, "event_id", id, "destination", string(server), "err", err)
			continue
		}
		full[ev.StateKeyNID] = ev.NID
	}
	return full, nil
}

// storeMissing fetches the events of ids this server lacks from server and stores them as
// outliers of the room, in one transaction.
func (s *Server) storeMissing(ctx context.Context, p *storage.PartialStateRoom, ver gomatrixserverlib.IRoomVersion, server spec.ServerName, ids []string) error {
	var missing []string
	for _, id := range ids {
		if _, err := s.db.Event(ctx, id); errors.Is(err, storage.ErrNotFound) {
			missing = append(missing, id)
		} else if err != nil {
			return err
		}
	}
	if len(missing) == 0 {
		return nil
	}
	pdus := make([]gomatrixserverlib.PDU, len(missing))
	errs := make([]error, len(missing))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(resyncFetchers, len(missing)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				pdus[i], errs[i] = s.remote.Event(ctx, server, ver, missing[i])
			}
		}()
	}
	for i := range missing {
		next <- i
	}
	close(next)
	wg.Wait()
	// An event that cannot be fetched or checked (its origin server's keys cannot be had,
	// say, when that server is down) is tried once more, then left out of the state with a
	// warning, unless nothing of the batch came: then the server is failing, and the next
	// one is asked.
	got := pdus[:0]
	var failed []error
	for i, pdu := range pdus {
		if errs[i] != nil {
			if pdu, errs[i] = s.remote.Event(ctx, server, ver, missing[i]); errs[i] != nil {
				failed = append(failed, errs[i])
				continue
			}
		}
		got = append(got, pdu)
	}
	if len(got) == 0 {
		return errors.Join(failed...)
	}
	for _, err := range failed {
		s.log.Warn("resync: an event of the state could not be fetched or checked; left out", "room_id", p.RoomID, "destination", string(server), "err", err)
	}
	pdus = got
	for _, pdu := range pdus {
		if pdu.RoomID().String() != p.RoomID {
			return fmt.Errorf("event %s is not in room %s", pdu.EventID(), p.RoomID)
		}
	}
	sort.SliceStable(pdus, func(i, j int) bool { return pdus[i].Depth() < pdus[j].Depth() })
	newKeys := map[storage.StateKey]int64{}
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		for _, pdu := range pdus {
			ev := &storage.Event{
				EventID: pdu.EventID(), RoomNID: p.RoomNID, Type: pdu.Type(), Sender: string(pdu.SenderID()),
				Depth: pdu.Depth(), OriginTS: int64(pdu.OriginServerTS()), Status: storage.StatusOutlier, JSON: pdu.JSON(),
			}
			if sk := pdu.StateKey(); sk != nil {
				key := storage.StateKey{Type: pdu.Type(), StateKey: *sk}
				nid, err := s.stateKeyNID(ctx, tx, key)
				if err != nil {
					return err
				}
				ev.StateKeyNID, newKeys[key] = nid, nid
			}
			if _, err := tx.InsertEvent(ctx, ev); err != nil && !errors.Is(err, storage.ErrConflict) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for k, nid := range newKeys {
		s.keys.remember(k, nid)
	}
	return nil
}

// completeState completes the partial state of p's room with full, the state before the
// join: every whole snapshot of the room and its current state gain the state keys they
// lack (the keys they hold, from the partial state and from every change since the join,
// stay), and so do the memberships; then the room is no longer partial. The room is locked
// meanwhile; the keys go in by chunks, each chunk in one transaction, so that a crash
// midway leaves a state that the next attempt completes.
func (s *Server) completeState(ctx context.Context, p *storage.PartialStateRoom, full map[int64]int64) error {
	r, err := s.lockRoom(ctx, p.RoomID)
	if err != nil {
		return err
	}
	defer r.mu.Unlock()
	if r.partial == nil || r.partial.JoinEventID != p.JoinEventID {
		return nil // resynced already, or joined again since: that join's resync completes it
	}
	// Every key of the full state goes into the whole snapshots that lack it, also the keys
	// the current state has: a key that changed since the join (a banned user who joined
	// again during the resync) must have its value from before in the snapshots the changes
	// are checked against again (recheckSinceJoin). Only the missing keys go into the
	// current state and the memberships.
	fill := make([]int64, 0, len(full))
	for k := range full {
		fill = append(fill, k)
	}
	sort.Slice(fill, func(i, j int) bool { return fill[i] < fill[j] })
	current := copyState(r.state)
	reload := func() error {
		// The cached expansions of the room's snapshots are stale.
		s.snapshots.clear()
		r.loaded = false
		return s.loadRoom(ctx, r)
	}
	defer func() {
		if !r.loaded {
			if err := reload(); err != nil {
				s.log.Error("reload a resynced room", "room_id", r.id, "err", err)
			}
		}
	}()
	for start := 0; start < len(fill); start += resyncFillChunk {
		chunk := make(map[int64]int64, resyncFillChunk)
		missing := make(map[int64]int64, resyncFillChunk)
		nids := make([]int64, 0, resyncFillChunk)
		for _, k := range fill[start:min(start+resyncFillChunk, len(fill))] {
			chunk[k] = full[k]
			if _, ok := current[k]; !ok {
				missing[k] = full[k]
				nids = append(nids, full[k])
			}
		}
		err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
			if err := tx.FillRootSnapshots(ctx, r.nid, chunk); err != nil {
				return err
			}
			if err := tx.SetCurrentState(ctx, r.nid, missing); err != nil {
				return err
			}
			pdus, err := s.pdusFrom(ctx, tx, r.version, nids)
			if err != nil {
				return err
			}
			for nid, pdu := range pdus {
				if pdu.Type() != spec.MRoomMember || pdu.StateKey() == nil {
					continue
				}
				m, err := pdu.Membership()
				if err != nil {
					continue
				}
				if err := tx.SetMembership(ctx, r.nid, *pdu.StateKey(), m, nid); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := reload(); err != nil {
		return err
	}
	if err := s.recheckSinceJoin(ctx, r, p.JoinEventID); err != nil {
		return err
	}
	if err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		return tx.DeletePartialStateRoom(ctx, r.nid)
	}); err != nil {
		return err
	}
	return reload()
}

// IsPartialState reports whether this server's state of roomID is partial: joined with
// omit_members and not yet resynced.
func (s *Server) IsPartialState(ctx context.Context, roomID string) (bool, error) {
	room, err := s.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if _, err := s.db.PartialStateRoom(ctx, room.NID); errors.Is(err, storage.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	return true, nil
}

// WaitFullState waits until the state of roomID is complete (not partial), for at most
// maxWait or until ctx ends, and reports whether it is. Read from the database, so that a
// resync run by another process is seen too.
func (s *Server) WaitFullState(ctx context.Context, roomID string, maxWait time.Duration) (bool, error) {
	deadline := time.Now().Add(maxWait)
	for {
		partial, err := s.IsPartialState(ctx, roomID)
		if err != nil || !partial {
			return !partial, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, nil
		case <-time.After(min(left, fullStatePoll)):
		}
	}
}
