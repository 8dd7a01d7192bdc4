package pushrules

import (
	"encoding/json"
	"fmt"
	"slices"
)

// Parse returns the rules in force for userID given the content of their stored
// m.push_rules account data ("" when they have none): the stored rules merged over the server
// defaults. Server-default rules keep the spec's conditions and position and take only what a
// user can change (enabled, actions) from the stored copy, so a change of the defaults reaches
// every user. User-defined rules outrank the defaults of their kind, except .m.rule.master,
// which outranks every rule.
func Parse(userID, content string) (Rules, error) {
	rules := Defaults(userID)
	if content == "" {
		return rules, nil
	}
	var stored Rules
	if err := json.Unmarshal([]byte(content), &stored); err != nil {
		return Rules{}, fmt.Errorf("decode %s of %s: %w", AccountDataType, userID, err)
	}
	for _, kind := range Kinds {
		list := rules.Global.Kind(kind)
		*list = mergeRules(kind, *list, *stored.Global.Kind(kind))
	}
	return rules, nil
}

// Defaults returns the server-default rule set of userID: the spec's predefined rules, in the
// spec's order, with the user's ID written where the spec says so.
func Defaults(userID string) Rules {
	return Rules{Global: Ruleset{
		Override:    defaultOverrideRules(userID),
		Content:     []Rule{},
		PostContent: defaultPostContentRules(),
		Room:        []Rule{},
		Sender:      []Rule{},
		Underride:   defaultUnderrideRules(),
	}}
}

// mergeRules merges the stored rules of one kind over its server defaults.
func mergeRules(kind string, defaults, stored []Rule) []Rule {
	saved := make(map[string]Rule)
	var user []Rule
	for _, r := range stored {
		if IsServerDefault(r.RuleID) {
			saved[r.RuleID] = r
			continue
		}
		r.Default = false
		if r.Actions == nil {
			r.Actions = []any{}
		}
		if r.Conditions == nil && (kind == "override" || kind == "underride" || kind == "postcontent") {
			r.Conditions = []Condition{}
		}
		user = append(user, r)
	}
	for i, d := range defaults {
		if s, ok := saved[d.RuleID]; ok {
			defaults[i].Enabled = s.Enabled
			if s.Actions != nil {
				defaults[i].Actions = s.Actions
			}
		}
	}
	n := UserRulesStart(defaults)
	out := make([]Rule, 0, len(defaults)+len(user))
	out = append(out, defaults[:n]...)
	out = append(out, user...)
	return append(out, defaults[n:]...)
}

// The server-default push rules, transcribed from the client-server API's "Predefined Rules"
// (v1.19), in the spec's order. Since v1.17 (MSC4210) the spec defines no default content,
// room or sender rules: the legacy body-matching rules .m.rule.contains_user_name,
// .m.rule.contains_display_name and .m.rule.roomnotif were removed in favour of
// .m.rule.is_user_mention and .m.rule.is_room_mention.

// defaultOverrideRules returns the spec's "Default Override Rules" for userID.
func defaultOverrideRules(userID string) []Rule {
	return []Rule{
		defaultRule(MasterRuleID, false, []Condition{}),
		defaultRule(".m.rule.suppress_notices", true, []Condition{
			eventMatch("content.msgtype", "m.notice"),
		}),
		defaultRule(".m.rule.invite_for_me", true, []Condition{
			eventMatch("type", "m.room.member"),
			eventMatch("content.membership", "invite"),
			eventMatch("state_key", userID),
		}, ActionNotify, soundTweak("default")),
		defaultRule(".m.rule.member_event", true, []Condition{
			eventMatch("type", "m.room.member"),
		}),
		defaultRule(".m.rule.is_user_mention", true, []Condition{
			eventProperty("event_property_contains", `content.m\.mentions.user_ids`, userID),
		}, ActionNotify, soundTweak("default"), highlightTweak()),
		defaultRule(".m.rule.is_room_mention", true, []Condition{
			eventProperty("event_property_is", `content.m\.mentions.room`, true),
			{Kind: "sender_notification_permission", Key: "room"},
		}, ActionNotify, highlightTweak()),
		defaultRule(".m.rule.tombstone", true, []Condition{
			eventMatch("type", "m.room.tombstone"),
			eventMatch("state_key", ""),
		}, ActionNotify, highlightTweak()),
		defaultRule(".m.rule.reaction", true, []Condition{
			eventMatch("type", "m.reaction"),
		}),
		defaultRule(".m.rule.room.server_acl", true, []Condition{
			eventMatch("type", "m.room.server_acl"),
			eventMatch("state_key", ""),
		}),
		defaultRule(".m.rule.suppress_edits", true, []Condition{
			eventProperty("event_property_is", `content.m\.relates_to.rel_type`, "m.replace"),
		}),
	}
}

// defaultUnderrideRules returns the spec's "Default Underride Rules", then MSC3930's.
func defaultUnderrideRules() []Rule {
	return append([]Rule{
		defaultRule(".m.rule.call", true, []Condition{
			eventMatch("type", "m.call.invite"),
		}, ActionNotify, soundTweak("ring")),
		defaultRule(".m.rule.encrypted_room_one_to_one", true, []Condition{
			{Kind: "room_member_count", Is: "2"},
			eventMatch("type", "m.room.encrypted"),
		}, ActionNotify, soundTweak("default")),
		defaultRule(".m.rule.room_one_to_one", true, []Condition{
			{Kind: "room_member_count", Is: "2"},
			eventMatch("type", "m.room.message"),
		}, ActionNotify, soundTweak("default")),
		defaultRule(".m.rule.message", true, []Condition{
			eventMatch("type", "m.room.message"),
		}, ActionNotify),
		defaultRule(".m.rule.encrypted", true, []Condition{
			eventMatch("type", "m.room.encrypted"),
		}, ActionNotify),
	}, pollRules()...)
}

// defaultPostContentRules returns MSC4306's rules, under its unstable names: an event in a
// thread the user is not subscribed to does not notify (mentions and keywords, checked
// before, still do), and one in a thread they subscribed to notifies with a sound whatever
// the room's settings (room rules come after).
//
// Both start disabled: with them on, a thread reply notifies only users subscribed to the
// thread, and users of clients that never subscribe (most of them today) would stop hearing
// of replies. A client that manages subscriptions enables them with the push rules API.
func defaultPostContentRules() []Rule {
	no, yes := false, true
	return []Rule{
		defaultRule(".io.element.msc4306.rule.unsubscribed_thread", false, []Condition{
			{Kind: ThreadSubscriptionCondition, Subscribed: &no},
		}),
		defaultRule(".io.element.msc4306.rule.subscribed_thread", false, []Condition{
			{Kind: ThreadSubscriptionCondition, Subscribed: &yes},
		}, ActionNotify, soundTweak("default")),
	}
}

// pollMirrors are MSC3930's groups of underride rules kept in step: "if the m.room.message
// rule gets muted in a room then the associated rules for polls would also get muted.
// Similarly, if either of the two poll rules were to be muted in a room then the other poll
// rule and the m.room.message rule would be muted as well."
var pollMirrors = [][]string{
	{".m.rule.message", ".m.rule.poll_start", ".m.rule.poll_end",
		".org.matrix.msc3930.rule.poll_start", ".org.matrix.msc3930.rule.poll_end"},
	{".m.rule.room_one_to_one", ".m.rule.poll_start_one_to_one", ".m.rule.poll_end_one_to_one",
		".org.matrix.msc3930.rule.poll_start_one_to_one", ".org.matrix.msc3930.rule.poll_end_one_to_one"},
}

// Mirrored returns the underride rules that a change of ruleID's enabled flag or actions
// applies to (MSC3930): its group, or ruleID alone.
func Mirrored(ruleID string) []string {
	for _, g := range pollMirrors {
		if slices.Contains(g, ruleID) {
			return g
		}
	}
	return []string{ruleID}
}

// ThreadSubscriptionCondition is MSC4306's condition kind, under its unstable name.
const ThreadSubscriptionCondition = "io.element.msc4306.thread_subscription"

// pollRules returns MSC3930's underride rules for polls, which mirror the m.room.message
// ones: a poll started or ended in a one-to-one room notifies with a sound, in any other room
// without. The one-to-one rules come first, as the MSC lists them; the rules under the MSC's
// unstable prefix follow for the poll event types clients send today (MSC3381's
// org.matrix.msc3381.poll.*). They come after .m.rule.encrypted, which no poll event matches.
func pollRules() []Rule {
	var rules []Rule
	for _, v := range []struct{ prefix, typePrefix string }{
		{".m.rule.", "m.poll."},
		{".org.matrix.msc3930.rule.", "org.matrix.msc3381.poll."},
	} {
		for _, what := range []string{"start", "end"} {
			rules = append(rules,
				defaultRule(v.prefix+"poll_"+what+"_one_to_one", true, []Condition{
					{Kind: "room_member_count", Is: "2"},
					eventMatch("type", v.typePrefix+what),
				}, ActionNotify, soundTweak("default")),
				defaultRule(v.prefix+"poll_"+what, true, []Condition{
					eventMatch("type", v.typePrefix+what),
				}, ActionNotify))
		}
	}
	return rules
}

// ActionNotify is the action that makes an event generate a notification.
const ActionNotify = "notify"

func defaultRule(id string, enabled bool, conds []Condition, actions ...any) Rule {
	if actions == nil {
		actions = []any{}
	}
	return Rule{RuleID: id, Default: true, Enabled: enabled, Conditions: conds, Actions: actions}
}

func eventMatch(key, pattern string) Condition {
	return Condition{Kind: "event_match", Key: key, Pattern: &pattern}
}

func eventProperty(kind, key string, value any) Condition {
	raw, _ := json.Marshal(value) // strings and booleans always marshal
	return Condition{Kind: kind, Key: key, Value: raw}
}

func soundTweak(sound string) map[string]any {
	return map[string]any{"set_tweak": "sound", "value": sound}
}

func highlightTweak() map[string]any {
	return map[string]any{"set_tweak": "highlight"}
}
