package syncapi

import (
	"context"
	"encoding/json"
	"errors"
	"sort"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// bumpTypes are the event types that count as activity for bump_stamp (MSC4186 RoomResult),
// with the unstable names clients still send for polls and live locations.
var bumpTypes = map[string]bool{
	spec.MRoomCreate: true, "m.room.message": true, "m.room.encrypted": true, "m.sticker": true,
	"m.call.invite": true, "m.poll.start": true, "m.beacon_info": true,
	"org.matrix.msc3381.poll.start": true, "org.matrix.msc3672.beacon_info": true,
}

// roomCandidate is one of the user's rooms that lists may show.
type roomCandidate struct {
	m      storage.Membership
	bump   int64 // bump_stamp, and the list order
	latest int64 // the room's newest event position at the response's positions (joined rooms)
	isDM   bool
	lists  []string   // the lists whose ranges hold the room
	config roomConfig // the combined config of the lists and subscription that match it
	match  bool       // a list range or a subscription matches it
	subbed bool       // a room subscription matches it
	// readMoved: the user's own read receipt moved since the connection's counts (joined)
	readMoved bool
}

// roomSelection is the outcome of the lists and subscriptions.
type roomSelection struct {
	counts    map[string]int      // list name -> rooms matching its filters
	rooms     []*roomCandidate    // the rooms matched, most recent first
	listRooms map[string][]string // list name -> the room IDs in its ranges
	subbed    map[string]bool     // rooms matched by a subscription
}

// selectRooms builds the user's room list (MSC4186 "Lists"): joined, invited and knocked
// rooms, rooms the user was kicked or banned from, and left rooms the connection has seen;
// ordered by bump stamp, most recent first; then filtered and sliced per list, and joined
// with the room subscriptions.
func (s *Server) selectRooms(ctx context.Context, viewer roomserver.Viewer, req slidingRequest, base *connState, memberships []storage.Membership, to Token) (*roomSelection, error) {
	directs := s.directRooms(ctx, viewer.UserID)
	invites := s.invitePolicy(viewer)
	recent, err := s.recentJoinedRooms(ctx, viewer.UserID, base.to.PDU, to.PDU)
	if err != nil {
		return nil, err
	}
	var all []*roomCandidate
	for _, m := range memberships {
		if m.Forgotten {
			continue
		}
		c := &roomCandidate{m: m, bump: m.EventNID, isDM: directs[m.RoomID]}
		switch m.Membership {
		case spec.Join:
			var err error
			if c.bump, c.latest, err = s.bumpStamp(ctx, m.RoomNID, to.PDU, recent); err != nil {
				return nil, err
			}
			// The user's own join counts as activity (MSC4186 leaves the ordering to the
			// server): an accepted invite keeps its place rather than dropping to the room's
			// last message before the join.
			c.bump = max(c.bump, m.EventNID)
		case spec.Invite:
			if hide, err := invites.hidden(ctx, m); err != nil {
				return nil, err
			} else if hide {
				continue // as /sync: blocked, ignored or from an ignored user
			}
		case spec.Knock:
		case spec.Leave, spec.Ban:
			if _, seen := base.rooms[m.RoomID]; !seen {
				// Left by the user themself: only rooms the connection has seen. Kicked or
				// banned by someone else: always, or the user may never learn of it.
				sender, err := s.membershipSender(ctx, m)
				if err != nil {
					return nil, err
				}
				if sender == viewer.UserID {
					continue
				}
			}
		default:
			continue
		}
		all = append(all, c)
	}
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].bump != all[j].bump {
			return all[i].bump > all[j].bump
		}
		return all[i].m.RoomID < all[j].m.RoomID
	})
	sel := &roomSelection{counts: map[string]int{}, listRooms: map[string][]string{}, subbed: map[string]bool{}}
	filters := &filterCache{s: s, userID: viewer.UserID}
	for name, l := range req.Lists {
		idx := 0
		for _, c := range all {
			ok, err := filters.allows(ctx, l.Filters, c)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			if inRanges(l.Ranges, idx) || l.Ranges == nil {
				c.lists = append(c.lists, name)
				c.config = c.config.merge(l.roomConfig)
				c.match = true
				sel.listRooms[name] = append(sel.listRooms[name], c.m.RoomID)
			}
			idx++
		}
		sel.counts[name] = idx
	}
	for _, c := range all {
		if sub, ok := req.RoomSubscriptions[c.m.RoomID]; ok {
			c.config = c.config.merge(sub)
			c.match, c.subbed = true, true
			sel.subbed[c.m.RoomID] = true
		}
		if c.match {
			sort.Strings(c.lists)
			sel.rooms = append(sel.rooms, c)
		}
	}
	return sel, nil
}

// inRanges reports whether index i is inside one of the inclusive ranges.
func inRanges(ranges [][2]int64, i int) bool {
	for _, r := range ranges {
		if int64(i) >= r[0] && int64(i) <= r[1] {
			return true
		}
	}
	return false
}

// directRooms returns the rooms of the user's m.direct account data.
func (s *Server) directRooms(ctx context.Context, userID string) map[string]bool {
	content, err := s.db.AccountDataEntry(ctx, userID, "", "m.direct")
	if err != nil {
		return nil
	}
	var direct map[string][]string
	if json.Unmarshal([]byte(content), &direct) != nil {
		return nil
	}
	out := map[string]bool{}
	for _, rooms := range direct {
		for _, r := range rooms {
			out[r] = true
		}
	}
	return out
}

// membershipSender returns who sent the user's current membership event; cached, since an
// event never changes its sender.
func (s *Server) membershipSender(ctx context.Context, m storage.Membership) (string, error) {
	ss := &s.sliding
	ss.mu.Lock()
	sender, ok := ss.senders[m.EventNID]
	ss.mu.Unlock()
	if ok {
		return sender, nil
	}
	sender, err := s.inviter(ctx, m)
	if err != nil {
		return "", err
	}
	ss.mu.Lock()
	if ss.senders == nil || len(ss.senders) >= maxSlidingBumpsCache {
		ss.senders = map[int64]string{}
	}
	ss.senders[m.EventNID] = sender
	ss.mu.Unlock()
	return sender, nil
}

// bumpEntry caches what is known of a room's events up to checked.
type bumpEntry struct {
	checked int64 // the room's events up to this stream position were looked at
	latest  int64 // its newest event at or before checked
	bump    int64 // its newest bump event at or before checked
}

// recentRooms is what one query of the events stream found: the user's joined rooms with
// events in (after, upTo], each with the newest one. A room missing has no event there.
type recentRooms struct {
	after, upTo int64
	rooms       map[int64]int64
}

// recentJoinedRooms returns the user's joined rooms with events in (after, upTo], or nil
// when after is 0 (a new connection: every room must be looked at).
func (s *Server) recentJoinedRooms(ctx context.Context, userID string, after, upTo int64) (*recentRooms, error) {
	if after <= 0 || after > upTo {
		return nil, nil
	}
	rooms, err := s.db.JoinedRoomsWithEvents(ctx, userID, after, upTo)
	if err != nil {
		return nil, err
	}
	return &recentRooms{after: after, upTo: upTo, rooms: rooms}, nil
}

// bumpStamp returns the stream position of the room's newest bump event at or before to, and
// the room's newest event position. Each event is looked at once: the cache remembers how far
// the room was scanned. With recent (the rooms with events since the connection's last
// response, up to to), a room without any and cached since then costs no query.
func (s *Server) bumpStamp(ctx context.Context, roomNID, to int64, recent *recentRooms) (bump, latest int64, err error) {
	ss := &s.sliding
	ss.mu.Lock()
	e := ss.bumps[roomNID]
	ss.mu.Unlock()
	latest = -1
	if recent != nil && recent.upTo == to {
		if l, ok := recent.rooms[roomNID]; ok {
			latest = l
		} else if e.checked >= recent.after && e.checked <= to {
			// No event in (after, to], which holds (checked, to]: the cache is current, and
			// now known to be so up to to.
			ss.mu.Lock()
			if ss.bumps[roomNID].checked < to {
				ss.bumps[roomNID] = bumpEntry{checked: to, latest: e.latest, bump: e.bump}
			}
			ss.mu.Unlock()
			return e.bump, e.latest, nil
		}
	}
	if latest < 0 {
		ss.mu.Lock()
		ss.roomLookups++
		ss.mu.Unlock()
		if latest, err = s.db.LatestRoomEventNID(ctx, roomNID, to); err != nil {
			return 0, 0, err
		}
	}
	if e.checked >= latest {
		if e.bump > latest {
			// Cached by a request at newer positions: this one must not see that event.
			return latest, latest, nil
		}
		return e.bump, latest, nil
	}
	found := int64(0)
	upTo := latest
	for page := 0; page < 20 && upTo > e.checked && found == 0; page++ {
		evs, more, err := s.db.RoomEventsAfter(ctx, roomNID, e.checked, upTo, 100)
		if err != nil {
			return 0, 0, err
		}
		for i := len(evs) - 1; i >= 0; i-- {
			if bumpTypes[evs[i].Type] {
				found = evs[i].NID
				break
			}
		}
		if !more || len(evs) == 0 {
			break
		}
		upTo = evs[0].NID - 1
	}
	if found == 0 {
		found = e.bump
		if found == 0 && upTo > e.checked {
			found = latest // a long history without a bump event: count the newest
		}
	}
	ss.mu.Lock()
	if ss.bumps == nil || len(ss.bumps) >= maxSlidingBumpsCache {
		ss.bumps = map[int64]bumpEntry{}
	}
	if ss.bumps[roomNID].checked < to {
		// latest is the newest event at or before to: the room is known up to to.
		ss.bumps[roomNID] = bumpEntry{checked: to, latest: latest, bump: found}
	}
	ss.mu.Unlock()
	return found, latest, nil
}

// filterCache looks up what list filters need, once per room and request.
type filterCache struct {
	s         *Server
	userID    string
	encrypted map[int64]bool
	roomType  map[int64]*string
	tags      map[string]map[string]bool
}

// allows applies a SlidingRoomFilter to a room; all its fields must hold.
func (fc *filterCache) allows(ctx context.Context, f *slidingFilters, c *roomCandidate) (bool, error) {
	if f == nil {
		return true, nil
	}
	invited := c.m.Membership == spec.Invite
	if want := f.IsInvited; want == nil && f.IsInvite != nil {
		f.IsInvited = f.IsInvite
	}
	if f.IsInvited != nil && *f.IsInvited != invited {
		return false, nil
	}
	if f.IsDM != nil && *f.IsDM != c.isDM {
		return false, nil
	}
	if f.IsEncrypted != nil {
		enc, err := fc.isEncrypted(ctx, c.m.RoomNID)
		if err != nil {
			return false, err
		}
		if enc != *f.IsEncrypted {
			return false, nil
		}
	}
	if f.RoomTypes != nil || len(f.NotRoomTypes) > 0 {
		rt, err := fc.createType(ctx, c.m.RoomNID)
		if err != nil {
			return false, err
		}
		if containsType(f.NotRoomTypes, rt) || (f.RoomTypes != nil && !containsType(*f.RoomTypes, rt)) {
			return false, nil
		}
	}
	if len(f.Tags) > 0 || len(f.NotTags) > 0 {
		tags := fc.roomTags(ctx, c.m.RoomID)
		for _, t := range f.NotTags {
			if tags[t] {
				return false, nil
			}
		}
		if len(f.Tags) > 0 {
			any := false
			for _, t := range f.Tags {
				any = any || tags[t]
			}
			if !any {
				return false, nil
			}
		}
	}
	return true, nil
}

func containsType(types []*string, rt *string) bool {
	for _, t := range types {
		if (t == nil && rt == nil) || (t != nil && rt != nil && *t == *rt) {
			return true
		}
	}
	return false
}

func (fc *filterCache) isEncrypted(ctx context.Context, roomNID int64) (bool, error) {
	if v, ok := fc.encrypted[roomNID]; ok {
		return v, nil
	}
	_, err := fc.s.db.CurrentStateEvent(ctx, roomNID, storage.StateKey{Type: "m.room.encryption"})
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return false, err
	}
	if fc.encrypted == nil {
		fc.encrypted = map[int64]bool{}
	}
	fc.encrypted[roomNID] = err == nil
	return err == nil, nil
}

// createType returns the type in the room's m.room.create content, nil for none.
func (fc *filterCache) createType(ctx context.Context, roomNID int64) (*string, error) {
	if v, ok := fc.roomType[roomNID]; ok {
		return v, nil
	}
	ev, err := fc.s.db.CurrentStateEvent(ctx, roomNID, storage.StateKey{Type: spec.MRoomCreate})
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	var rt *string
	if err == nil {
		var c struct {
			Content struct {
				Type *string `json:"type"`
			} `json:"content"`
		}
		if json.Unmarshal(ev.JSON, &c) == nil {
			rt = c.Content.Type
		}
	}
	if fc.roomType == nil {
		fc.roomType = map[int64]*string{}
	}
	fc.roomType[roomNID] = rt
	return rt, nil
}

// roomTags returns the tag names of the user's m.tag room account data.
func (fc *filterCache) roomTags(ctx context.Context, roomID string) map[string]bool {
	if v, ok := fc.tags[roomID]; ok {
		return v
	}
	out := map[string]bool{}
	if content, err := fc.s.db.AccountDataEntry(ctx, fc.userID, roomID, "m.tag"); err == nil {
		var c struct {
			Tags map[string]json.RawMessage `json:"tags"`
		}
		if json.Unmarshal([]byte(content), &c) == nil {
			for t := range c.Tags {
				out[t] = true
			}
		}
	}
	if fc.tags == nil {
		fc.tags = map[string]map[string]bool{}
	}
	fc.tags[roomID] = out
	return out
}
