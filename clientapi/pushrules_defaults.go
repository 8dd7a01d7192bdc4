package clientapi

import (
	"encoding/json"
	"fmt"
)

// ParsePushRules returns the rules in force for userID given the content of their stored
// m.push_rules account data ("" when they have none): the stored rules merged over the server
// defaults. Server-default rules keep the spec's conditions and position and take only what a
// user can change (enabled, actions) from the stored copy, so a change of the defaults reaches
// every user. User-defined rules outrank the defaults of their kind, except .m.rule.master,
// which outranks every rule.
func ParsePushRules(userID, content string) (PushRules, error) {
	rules := DefaultPushRules(userID)
	if content == "" {
		return rules, nil
	}
	var stored PushRules
	if err := json.Unmarshal([]byte(content), &stored); err != nil {
		return PushRules{}, fmt.Errorf("decode %s of %s: %w", pushRulesType, userID, err)
	}
	for _, kind := range pushRuleKinds {
		list := rules.Global.kind(kind)
		*list = mergePushRules(kind, *list, *stored.Global.kind(kind))
	}
	return rules, nil
}

// mergePushRules merges the stored rules of one kind over its server defaults.
func mergePushRules(kind string, defaults, stored []PushRule) []PushRule {
	saved := make(map[string]PushRule)
	var user []PushRule
	for _, r := range stored {
		if isServerDefault(r.RuleID) {
			saved[r.RuleID] = r
			continue
		}
		r.Default = false
		if r.Actions == nil {
			r.Actions = []any{}
		}
		if r.Conditions == nil && (kind == "override" || kind == "underride") {
			r.Conditions = []PushCondition{}
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
	n := userRulesStart(defaults)
	out := make([]PushRule, 0, len(defaults)+len(user))
	out = append(out, defaults[:n]...)
	out = append(out, user...)
	return append(out, defaults[n:]...)
}

// userRulesStart is the index of the most important user-defined rule's place in a list: just
// after .m.rule.master.
func userRulesStart(rules []PushRule) int {
	if len(rules) > 0 && rules[0].RuleID == masterRuleID {
		return 1
	}
	return 0
}

// The server-default push rules, transcribed from the client-server API's "Predefined Rules"
// (v1.19), in the spec's order. Since v1.17 (MSC4210) the spec defines no default content,
// room or sender rules: the legacy body-matching rules .m.rule.contains_user_name,
// .m.rule.contains_display_name and .m.rule.roomnotif were removed in favour of
// .m.rule.is_user_mention and .m.rule.is_room_mention.

// defaultOverrideRules returns the spec's "Default Override Rules" for userID.
func defaultOverrideRules(userID string) []PushRule {
	return []PushRule{
		defaultRule(".m.rule.master", false, []PushCondition{}),
		defaultRule(".m.rule.suppress_notices", true, []PushCondition{
			eventMatch("content.msgtype", "m.notice"),
		}),
		defaultRule(".m.rule.invite_for_me", true, []PushCondition{
			eventMatch("type", "m.room.member"),
			eventMatch("content.membership", "invite"),
			eventMatch("state_key", userID),
		}, actionNotify, soundTweak("default")),
		defaultRule(".m.rule.member_event", true, []PushCondition{
			eventMatch("type", "m.room.member"),
		}),
		defaultRule(".m.rule.is_user_mention", true, []PushCondition{
			eventProperty("event_property_contains", `content.m\.mentions.user_ids`, userID),
		}, actionNotify, soundTweak("default"), highlightTweak()),
		defaultRule(".m.rule.is_room_mention", true, []PushCondition{
			eventProperty("event_property_is", `content.m\.mentions.room`, true),
			{Kind: "sender_notification_permission", Key: "room"},
		}, actionNotify, highlightTweak()),
		defaultRule(".m.rule.tombstone", true, []PushCondition{
			eventMatch("type", "m.room.tombstone"),
			eventMatch("state_key", ""),
		}, actionNotify, highlightTweak()),
		defaultRule(".m.rule.reaction", true, []PushCondition{
			eventMatch("type", "m.reaction"),
		}),
		defaultRule(".m.rule.room.server_acl", true, []PushCondition{
			eventMatch("type", "m.room.server_acl"),
			eventMatch("state_key", ""),
		}),
		defaultRule(".m.rule.suppress_edits", true, []PushCondition{
			eventProperty("event_property_is", `content.m\.relates_to.rel_type`, "m.replace"),
		}),
	}
}

// defaultUnderrideRules returns the spec's "Default Underride Rules".
func defaultUnderrideRules() []PushRule {
	return []PushRule{
		defaultRule(".m.rule.call", true, []PushCondition{
			eventMatch("type", "m.call.invite"),
		}, actionNotify, soundTweak("ring")),
		defaultRule(".m.rule.encrypted_room_one_to_one", true, []PushCondition{
			{Kind: "room_member_count", Is: "2"},
			eventMatch("type", "m.room.encrypted"),
		}, actionNotify, soundTweak("default")),
		defaultRule(".m.rule.room_one_to_one", true, []PushCondition{
			{Kind: "room_member_count", Is: "2"},
			eventMatch("type", "m.room.message"),
		}, actionNotify, soundTweak("default")),
		defaultRule(".m.rule.message", true, []PushCondition{
			eventMatch("type", "m.room.message"),
		}, actionNotify),
		defaultRule(".m.rule.encrypted", true, []PushCondition{
			eventMatch("type", "m.room.encrypted"),
		}, actionNotify),
	}
}

const actionNotify = "notify"

func defaultRule(id string, enabled bool, conds []PushCondition, actions ...any) PushRule {
	if actions == nil {
		actions = []any{}
	}
	return PushRule{RuleID: id, Default: true, Enabled: enabled, Conditions: conds, Actions: actions}
}

func eventMatch(key, pattern string) PushCondition {
	return PushCondition{Kind: "event_match", Key: key, Pattern: &pattern}
}

func eventProperty(kind, key string, value any) PushCondition {
	raw, _ := json.Marshal(value) // strings and booleans always marshal
	return PushCondition{Kind: kind, Key: key, Value: raw}
}

func soundTweak(sound string) map[string]any {
	return map[string]any{"set_tweak": "sound", "value": sound}
}

func highlightTweak() map[string]any {
	return map[string]any{"set_tweak": "highlight"}
}
