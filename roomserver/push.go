package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

	"github.com/lattice-chat/lattice/internal/pushrules"
	"github.com/lattice-chat/lattice/storage"
)

// Push actions are computed when an event commits, in its transaction: for every local user
// joined to the room (and the target of an invite) other than the sender, their push rules
// decide whether the event notifies them. The rules are evaluated once for all members on the
// default rules (their result only differs for the users the event mentions or invites,
// evaluated apart) and once per member with rules of their own. The shared result is stored
// once per event (storage.SharedPush), with push spans saying which members it covers; the
// other notifications are one event_push_actions row each. /sync counts both, GET
// /notifications lists both and the pusher sends both. The cost per event is a few passes
// over the room's member map in memory and a few rows, whatever the room's size; a span
// opens or closes only where a member joins, leaves or changes rules.

// pushCache holds users' parsed push rules between events, following changes of their
// m.push_rules account data by its stream position, so that rules are read from the database
// once per change and not once per event. The zero value is ready to use.
type pushCache struct {
	mu      sync.Mutex            // guards the fields below; held while rules are refreshed and loaded
	started bool                  // whether pos has been read
	pos     int64                 // account data stream position the entries are current at
	users   map[string]*userRules // by user ID
	generic *pushrules.Rules      // the default rules of nobody in particular
}

// userRules are a user's rules in force; nil rules mean the server defaults.
type userRules struct {
	rules *pushrules.Rules
}

// maxCachedRules bounds the cache; when full it starts again empty.
const maxCachedRules = 100000

// nobody is a user ID no event can mention or invite: the default rules evaluated for it give
// the result of every user on the default rules whom the event does not name.
const nobody = "@\x00:\x00"

// rulesOf returns the rules in force for each of users, in the same order, and for also
// after them unless it is "" (nil rules for the server defaults), reading the changed and the
// missing ones in tx; and the account data stream position they are current at, which moves
// whenever someone's rules change.
func (c *pushCache) rulesOf(ctx context.Context, tx *storage.Tx, users []string, also string) ([]*userRules, *pushrules.Rules, int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started || len(c.users) > maxCachedRules {
		pos, err := tx.StreamPos(ctx, string(storage.StreamAccountData))
		if err != nil {
			return nil, nil, 0, err
		}
		generic := pushrules.Defaults(nobody)
		c.started, c.pos, c.users, c.generic = true, pos, map[string]*userRules{}, &generic
	} else {
		changed, err := tx.PushRulesChangedSince(ctx, c.pos)
		if err != nil {
			return nil, nil, 0, err
		}
		for _, e := range changed {
			delete(c.users, e.UserID)
			c.pos = max(c.pos, e.StreamPos)
		}
	}
	if also != "" {
		users = append(users[:len(users):len(users)], also)
	}
	out := make([]*userRules, len(users))
	var missing []int
	for i, u := range users {
		if ur, ok := c.users[u]; ok {
			out[i] = ur
		} else {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		ids := make([]string, len(missing))
		for j, i := range missing {
			ids[j] = users[i]
		}
		stored, err := tx.PushRulesOf(ctx, ids)
		if err != nil {
			return nil, nil, 0, err
		}
		// One entry per user, shared by the cache and the result: the rules read below must
		// decide this event too, not only the next one.
		for _, i := range missing {
			ur := c.users[users[i]]
			if ur == nil {
				ur = &userRules{}
				c.users[users[i]] = ur
			}
			out[i] = ur
		}
		for _, e := range stored {
			rules, err := pushrules.Parse(e.UserID, e.Content)
			if err != nil {
				continue // unreadable rules: the defaults apply
			}
			if ur := c.users[e.UserID]; ur != nil {
				ur.rules = &rules
			}
		}
	}
	return out, c.generic, c.pos, nil
}

// pushActions evaluates the push rules of the room's local members for ev, committed in tx,
// and adds its notifications to the batch's head h. memberships are the membership changes of
// the batch so far.
//
// When the default rules notify of ev, their result is stored once (storage.SharedPush) for
// every joined local member on the default rules whom ev does not name; the push spans that
// say who those members are change only where the set changes, so the per-member work of an
// event is map lookups in memory. Members with rules of their own, and those ev names, get
// one row each when ev notifies them.
func (s *Server) pushActions(ctx context.Context, tx *storage.Tx, r *room, ev *storage.Event, pdu gomatrixserverlib.PDU, memberships map[string]string, h *head) error {
	rcp := s.pushRecipients(r, ev, pdu, memberships)
	if target, ok := inviteTarget(pdu); ok && readInvitePermissions(ctx, &tx.Q, target).Verdict(ev.Sender) != InviteAllow {
		// MSC4155: an ignored invite is not notified (a blocked one never gets here). The
		// target of an invite is not a joined member: it comes after them.
		rcp.users = slices.DeleteFunc(rcp.users, func(u string) bool { return u == target })
		rcp.nJoined = min(rcp.nJoined, len(rcp.users))
	}
	if len(rcp.users) == 0 {
		return nil
	}
	pev, err := pushrules.NewEvent(pdu.JSON())
	if err != nil {
		return nil // not JSON we can evaluate: no notifications
	}
	rules, generic, rulesPos, err := s.push.rulesOf(ctx, tx, rcp.users, rcp.sender)
	if err != nil {
		return err
	}
	ec := pushrules.EvalContext{RoomID: r.id, MemberCount: rcp.joined}
	if err := s.senderPermission(ctx, r, ev.Sender, &ec); err != nil {
		return err
	}
	named := namedUsers(pdu)
	thread := s.threadOf(ctx, r.nid, pdu.Content())
	// MSC4306: an event of a thread matches the thread_subscription condition, subscribed or
	// not depending on the user; the generic (shared) evaluation is that of a user not
	// subscribed, and subscribers are evaluated on their own.
	var subscribers map[string]bool
	if ec.InThread = thread != storage.ThreadMain; ec.InThread {
		if subscribers, err = tx.ThreadSubscribers(ctx, r.id, thread); err != nil {
			return err
		}
	}
	genNotify, genHighlight, genActions := pushrules.Evaluate(generic, pev, ec)
	genJSON, _ := json.Marshal(genActions)
	// Spans follow every event, not only those with a shared row, so that a join opens its
	// member's span at once rather than the next message opening all of a new room's.
	if err := s.followSpans(ctx, tx, r, ev, rcp, rules, rulesPos, h); err != nil {
		return err
	}
	var shared *storage.SharedPush
	if genNotify {
		shared = &storage.SharedPush{RoomNID: r.nid, EventNID: ev.NID, Sender: ev.Sender, ThreadID: thread,
			Highlight: genHighlight, Actions: string(genJSON), TS: ev.OriginTS}
	}
	for i, u := range rcp.users {
		ur := rules[i]
		if ur.rules == nil && !named[u] && !subscribers[u] {
			continue // the shared result, if it notifies
		}
		if shared != nil && ur.rules == nil && i < rcp.nJoined {
			shared.Apart = append(shared.Apart, u)
		}
		rs := ur.rules
		if rs == nil {
			d := pushrules.Defaults(u)
			rs = &d
		}
		uc := ec
		uc.UserID = u
		uc.DisplayName = s.displayNameFunc(ctx, r, u)
		uc.ThreadSubscribed = subscribers[u]
		notify, highlight, actions := pushrules.Evaluate(rs, pev, uc)
		if notify {
			actionsJSON, _ := json.Marshal(actions)
			h.pushes = append(h.pushes, storage.PushAction{UserID: u, RoomNID: r.nid, EventNID: ev.NID, ThreadID: thread,
				Highlight: highlight, Actions: string(actionsJSON), TS: ev.OriginTS})
		}
	}
	if shared != nil {
		h.shared = append(h.shared, *shared)
	}
	return nil
}

// followSpans brings the room's push spans in step with the members ev's shared result
// covers: the joined local members on the default rules, the sender included (a shared row
// names its sender, who is never notified of their own event). Spans open and close at ev.
func (s *Server) followSpans(ctx context.Context, tx *storage.Tx, r *room, ev *storage.Event, rcp recipients, rules []*userRules, rulesPos int64, h *head) error {
	pm := rcp.cached
	if pm != nil && pm.followed && pm.rulesPos == rulesPos {
		return nil // neither the members nor anyone's rules changed since the spans were in step
	}
	open := h.covered
	if open == nil {
		if r.pushCovered == nil {
			users, err := tx.OpenPushSpans(ctx, r.nid)
			if err != nil {
				return err
			}
			r.pushCovered = make(map[string]bool, len(users))
			for _, u := range users {
				r.pushCovered[u] = true
			}
		}
		open = r.pushCovered
	}
	// rules has the sender's after the recipients' when the sender is a joined local member.
	senderCovered := rcp.senderJoined && rules[len(rcp.users)].rules == nil
	want := 0
	var opens []string
	for i, u := range rcp.users[:rcp.nJoined] {
		if rules[i].rules == nil {
			want++
			if !open[u] {
				opens = append(opens, u)
			}
		}
	}
	if senderCovered {
		want++
		if !open[ev.Sender] {
			opens = append(opens, ev.Sender)
		}
	}
	if len(opens) == 0 && want == len(open) {
		if pm != nil && h.covered == nil {
			// The committed spans are in step with the cached members at these rules.
			pm.followed, pm.rulesPos = true, rulesPos
		}
		return nil // the same members as before
	}
	next := make(map[string]bool, want)
	for i, u := range rcp.users[:rcp.nJoined] {
		if rules[i].rules == nil {
			next[u] = true
		}
	}
	if senderCovered {
		next[ev.Sender] = true
	}
	for u := range open {
		if !next[u] {
			h.spans = append(h.spans, storage.SpanChange{UserID: u, RoomNID: r.nid, EventNID: ev.NID})
		}
	}
	for _, u := range opens {
		h.spans = append(h.spans, storage.SpanChange{UserID: u, RoomNID: r.nid, EventNID: ev.NID, Open: true})
	}
	h.covered = next
	return nil
}

// storePushes writes the notifications gathered in h and clears them from it (the push span
// changes first: the shared rows are read through them).
func storePushes(ctx context.Context, tx *storage.Tx, h *head) error {
	if err := tx.ChangePushSpans(ctx, h.spans); err != nil {
		return err
	}
	if err := tx.InsertSharedPushes(ctx, h.shared); err != nil {
		return err
	}
	if err := tx.InsertPushActions(ctx, h.pushes); err != nil {
		return err
	}
	h.spans, h.shared, h.pushes = nil, nil, nil
	return nil
}

// recipients are the local users whose push rules apply to an event: users lists the joined
// members other than the sender (the first nJoined) and then the target of an invite.
type recipients struct {
	users        []string
	nJoined      int
	joined       int    // joined members, local or not
	sender       string // the sender, when a joined local member
	senderJoined bool
	cached       *pushMembers // the room's cached members the recipients came from, if any
}

// pushMembers are a room's joined local members (r.members read once for every event until
// it changes) and whether its push spans were found in step with them.
type pushMembers struct {
	local    []string // the joined local members
	joined   int      // joined members, local or not
	followed bool     // whether the committed spans cover exactly those on the default rules...
	rulesPos int64    // ...at this push rules position
}

// pushRecipients returns the local users whose rules apply to ev (the joined members and the
// target of an invite, except the sender, who is never notified of their own events) and the
// number of joined members. For an event other than a membership event, without membership
// changes in the batch, it reads the room's cached members instead of the membership map.
func (s *Server) pushRecipients(r *room, ev *storage.Event, pdu gomatrixserverlib.PDU, memberships map[string]string) recipients {
	if len(memberships) == 0 && ev.Type != spec.MRoomMember {
		pm := r.pushMembers
		if pm == nil {
			all := s.scanRecipients(r, "", nil)
			pm = &pushMembers{local: all.users, joined: all.joined}
			r.pushMembers = pm
		}
		rcp := recipients{users: make([]string, 0, len(pm.local)), joined: pm.joined, cached: pm}
		for _, u := range pm.local {
			if u == ev.Sender {
				rcp.sender, rcp.senderJoined = u, true
			} else {
				rcp.users = append(rcp.users, u)
			}
		}
		rcp.nJoined = len(rcp.users)
		return rcp
	}
	rcp := s.scanRecipients(r, ev.Sender, memberships)
	if ev.Type == spec.MRoomMember && pdu.StateKey() != nil {
		target := *pdu.StateKey()
		if m, _ := pdu.Membership(); m == spec.Invite && target != ev.Sender && s.isLocal(target) {
			rcp.users = append(rcp.users, target)
		}
	}
	return rcp
}

// scanRecipients returns the joined local members other than sender, reading the room's
// membership map with the batch's changes over it.
func (s *Server) scanRecipients(r *room, sender string, memberships map[string]string) recipients {
	var rcp recipients
	consider := func(u, m string) {
		if m != spec.Join {
			return
		}
		rcp.joined++
		switch {
		case u == sender:
			if s.isLocal(u) {
				rcp.sender, rcp.senderJoined = u, true
			}
		case s.isLocal(u):
			rcp.users = append(rcp.users, u)
		}
	}
	for u, m := range r.members {
		if bm, ok := memberships[u]; ok {
			m = bm
		}
		consider(u, m)
	}
	for u, m := range memberships {
		if _, ok := r.members[u]; !ok {
			consider(u, m)
		}
	}
	rcp.nJoined = len(rcp.users)
	return rcp
}

// senderPermission fills in the sender's power level and the power levels' notification
// levels, for sender_notification_permission. Like the display names, they are read from the
// committed state before the batch: a batch of several events holds messages only.
func (s *Server) senderPermission(ctx context.Context, r *room, sender string, ec *pushrules.EvalContext) error {
	pl, err := s.powerLevels(ctx, r)
	if err != nil {
		return fmt.Errorf("power levels for push rules: %w", err)
	}
	ec.SenderPowerLevel = s.userLevel(r, pl, sender)
	ec.NotificationLevels = pl.Notifications
	return nil
}

// namedUsers returns the users an event's rules may treat apart from everyone else: those in
// content.m.mentions.user_ids and the target of a membership event.
func namedUsers(pdu gomatrixserverlib.PDU) map[string]bool {
	named := map[string]bool{}
	for _, u := range gjson.GetBytes(pdu.Content(), `m\.mentions.user_ids`).Array() {
		if u.Type == gjson.String {
			named[u.Str] = true
		}
	}
	if sk := pdu.StateKey(); sk != nil && pdu.Type() == spec.MRoomMember {
		named[*sk] = true
	}
	return named
}

// displayNameFunc returns a function that reads the user's display name in the room, for the
// deprecated contains_display_name condition.
func (s *Server) displayNameFunc(ctx context.Context, r *room, userID string) func() string {
	return func() string {
		evs, err := s.stateEvents(ctx, r.version, r.state, []storage.StateKey{{Type: spec.MRoomMember, StateKey: userID}})
		if err != nil || len(evs) == 0 {
			return ""
		}
		return gjson.GetBytes(evs[0].Content(), "displayname").Str
	}
}

// maxThreadHops bounds the walk up relations to a thread root, as the spec recommends.
const maxThreadHops = 3

// threadOf returns the thread an event of the room with the given content belongs to: the
// root of an m.thread relation, found by following relations up to three hops (client-server
// API, "Threaded read receipts"), else "main". A relation at an event of another room is
// ignored ("Forming relationships between events"), so it leads to no thread.
func (s *Server) threadOf(ctx context.Context, roomNID int64, content []byte) string {
	for range maxThreadHops {
		rel := gjson.GetBytes(content, `m\.relates_to`)
		parent := rel.Get("event_id").Str
		if parent == "" {
			parent = rel.Get(`m\.in_reply_to.event_id`).Str
		}
		if parent == "" || !strings.HasPrefix(parent, "$") {
			break
		}
		pev, err := s.db.Event(ctx, parent)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			s.log.Warn("thread of event", "event_id", parent, "err", err)
			break
		}
		if err == nil && pev.RoomNID != roomNID {
			break
		}
		if rel.Get("rel_type").Str == "m.thread" {
			return parent // a root not known yet still names the thread
		}
		if err != nil {
			break
		}
		content = []byte(gjson.GetBytes(pev.JSON, "content").Raw)
	}
	return storage.ThreadMain
}

// Listeners tells several listeners about committed events, in order.
type Listeners []Listener

// EventsCommitted implements Listener.
func (ls Listeners) EventsCommitted(pos int64, users []string) {
	for _, l := range ls {
		l.EventsCommitted(pos, users)
	}
}
