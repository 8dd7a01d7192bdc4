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
// decide whether the event notifies them, and each notification is an event_push_actions row
// that /sync counts, GET /notifications lists and the pusher sends. The cost per event is one
// pass over the room's member map, one rule evaluation for all members on the default rules
// (their result only differs for the users the event mentions or invites, evaluated apart),
// one evaluation per member with rules of their own, and one INSERT per commit batch (the
// rows as one JSON parameter, see storage.InsertPushActions).

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

// rulesOf returns the rules in force for each of users (nil for the server defaults), reading
// the changed and the missing ones in tx.
func (c *pushCache) rulesOf(ctx context.Context, tx *storage.Tx, users []string) (map[string]*userRules, *pushrules.Rules, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started || len(c.users) > maxCachedRules {
		pos, err := tx.StreamPos(ctx, string(storage.StreamAccountData))
		if err != nil {
			return nil, nil, err
		}
		generic := pushrules.Defaults(nobody)
		c.started, c.pos, c.users, c.generic = true, pos, map[string]*userRules{}, &generic
	} else {
		changed, err := tx.PushRulesChangedSince(ctx, c.pos)
		if err != nil {
			return nil, nil, err
		}
		for _, e := range changed {
			delete(c.users, e.UserID)
			c.pos = max(c.pos, e.StreamPos)
		}
	}
	out := make(map[string]*userRules, len(users))
	var missing []string
	for _, u := range users {
		if ur, ok := c.users[u]; ok {
			out[u] = ur
		} else {
			missing = append(missing, u)
		}
	}
	if len(missing) > 0 {
		stored, err := tx.PushRulesOf(ctx, missing)
		if err != nil {
			return nil, nil, err
		}
		// One entry per user, shared by the cache and the result: the rules read below must
		// decide this event too, not only the next one.
		for _, u := range missing {
			ur := &userRules{}
			c.users[u], out[u] = ur, ur
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
	return out, c.generic, nil
}

// pushActions evaluates the push rules of the room's local members for ev, committed in tx,
// and returns a notification for each user it notifies; the batch stores them together.
// memberships are the membership changes of the batch so far.
func (s *Server) pushActions(ctx context.Context, tx *storage.Tx, r *room, ev *storage.Event, pdu gomatrixserverlib.PDU, memberships map[string]string) ([]storage.PushAction, error) {
	users, joined := s.pushRecipients(r, ev, pdu, memberships)
	if target, ok := inviteTarget(pdu); ok && readInvitePermissions(ctx, &tx.Q, target).Verdict(ev.Sender) != InviteAllow {
		// MSC4155: an ignored invite is not notified (a blocked one never gets here).
		users = slices.DeleteFunc(users, func(u string) bool { return u == target })
	}
	if len(users) == 0 {
		return nil, nil
	}
	pev, err := pushrules.NewEvent(pdu.JSON())
	if err != nil {
		return nil, nil // not JSON we can evaluate: no notifications
	}
	rules, generic, err := s.push.rulesOf(ctx, tx, users)
	if err != nil {
		return nil, err
	}
	ec := pushrules.EvalContext{RoomID: r.id, MemberCount: joined}
	if err := s.senderPermission(ctx, r, ev.Sender, &ec); err != nil {
		return nil, err
	}
	named := namedUsers(pdu)
	thread := s.threadOf(ctx, r.nid, pdu.Content())
	// MSC4306: an event of a thread matches the thread_subscription condition, subscribed or
	// not depending on the user; the generic evaluation is that of a user not subscribed.
	var subscribers map[string]bool
	if ec.InThread = thread != storage.ThreadMain; ec.InThread {
		if subscribers, err = tx.ThreadSubscribers(ctx, r.id, thread); err != nil {
			return nil, err
		}
	}
	genNotify, genHighlight, genActions := pushrules.Evaluate(generic, pev, ec)
	genJSON, _ := json.Marshal(genActions)
	var acts []storage.PushAction
	for _, u := range users {
		notify, highlight, actionsJSON := genNotify, genHighlight, genJSON
		if ur := rules[u]; ur.rules != nil || named[u] || subscribers[u] {
			rs := ur.rules
			if rs == nil {
				d := pushrules.Defaults(u)
				rs = &d
			}
			uc := ec
			uc.UserID = u
			uc.DisplayName = s.displayNameFunc(ctx, r, u)
			uc.ThreadSubscribed = subscribers[u]
			var actions []any
			notify, highlight, actions = pushrules.Evaluate(rs, pev, uc)
			actionsJSON, _ = json.Marshal(actions)
		}
		if notify {
			acts = append(acts, storage.PushAction{UserID: u, RoomNID: r.nid, EventNID: ev.NID, ThreadID: thread,
				Highlight: highlight, Actions: string(actionsJSON), TS: ev.OriginTS})
		}
	}
	return acts, nil
}

// pushRecipients returns the local users whose rules apply to ev (the joined members and the
// target of an invite, except the sender, who is never notified of their own events) and the
// number of joined members.
func (s *Server) pushRecipients(r *room, ev *storage.Event, pdu gomatrixserverlib.PDU, memberships map[string]string) ([]string, int) {
	var users []string
	joined := 0
	consider := func(u, m string) {
		if m != spec.Join {
			return
		}
		joined++
		if u != ev.Sender && s.isLocal(u) {
			users = append(users, u)
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
	if ev.Type == spec.MRoomMember && pdu.StateKey() != nil {
		target := *pdu.StateKey()
		if m, _ := pdu.Membership(); m == spec.Invite && target != ev.Sender && s.isLocal(target) {
			users = append(users, target)
		}
	}
	return users, joined
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
