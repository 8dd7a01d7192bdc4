// Package pushrules holds the push rules of the client-server API's push notifications
// module: the rule types stored as m.push_rules account data, the server-default rules, the
// merge of a user's stored rules over the defaults (Parse), and the evaluator that decides
// whether an event notifies a user (Evaluate). It is pure logic: it imports no Lattice
// package, no SQL and no HTTP, so both roomserver (which evaluates rules when events commit)
// and clientapi (which edits them) can use it.
package pushrules

import (
	"encoding/json"
	"slices"
	"strings"
)

// AccountDataType is the global account data type that holds a user's push rules; /sync
// delivers it to every client of the user when it changes.
const AccountDataType = "m.push_rules"

// MasterRuleID is the one server-default rule that outranks user-defined rules.
const MasterRuleID = ".m.rule.master"

// Rules is the content of the m.push_rules account data event and the response of
// GET /pushrules/: the rulesets by scope. The only scope is "global".
type Rules struct {
	Global Ruleset `json:"global"`
}

// Ruleset holds the rules of each kind, each list most important first. The kinds are
// checked in field order: override, content, postcontent, room, sender, underride.
// postcontent is MSC4306's kind for the thread subscription rules: it holds server-default
// rules only (users cannot add to it).
type Ruleset struct {
	Override    []Rule `json:"override"`
	Content     []Rule `json:"content"`
	PostContent []Rule `json:"postcontent"`
	Room        []Rule `json:"room"`
	Sender      []Rule `json:"sender"`
	Underride   []Rule `json:"underride"`
}

// Rule is one push rule (definitions/push_rule.yaml).
type Rule struct {
	RuleID  string `json:"rule_id"`
	Default bool   `json:"default"`
	Enabled bool   `json:"enabled"`
	// Conditions is non-nil, possibly empty, for override and underride rules only. A room
	// rule matches the room named by its RuleID, a sender rule the user named by it.
	Conditions []Condition `json:"conditions,omitzero"`
	// Actions are strings ("notify") or objects ({"set_tweak": "sound", "value": "default"}).
	Actions []any `json:"actions"`
	// Pattern is the glob matched against content.body, for content rules only.
	Pattern string `json:"pattern,omitempty"`
}

// Condition is one condition of an override or underride rule
// (definitions/push_condition.yaml). Which fields are set depends on Kind.
type Condition struct {
	Kind string `json:"kind"`
	Key  string `json:"key,omitempty"`
	// Pattern is a pointer because the empty pattern is meaningful (state_key "").
	Pattern *string `json:"pattern,omitempty"`
	Is      string  `json:"is,omitempty"`
	// Value is the JSON value of event_property_is and event_property_contains, kept raw
	// so that null, false and 0 survive.
	Value json.RawMessage `json:"value,omitempty"`
	// Subscribed is the argument of MSC4306's thread_subscription condition.
	Subscribed *bool `json:"subscribed,omitempty"`
}

// Kinds lists the rule kinds in the order they are checked.
var Kinds = []string{"override", "content", "postcontent", "room", "sender", "underride"}

// ServerOnlyKind is the kind that holds server-default rules only (MSC4306): creating a rule
// of it is refused with 400 M_INVALID_PARAM.
const ServerOnlyKind = "postcontent"

// Kind returns the list of the given kind, or nil for an unknown kind.
func (rs *Ruleset) Kind(kind string) *[]Rule {
	switch kind {
	case "override":
		return &rs.Override
	case "content":
		return &rs.Content
	case "postcontent":
		return &rs.PostContent
	case "room":
		return &rs.Room
	case "sender":
		return &rs.Sender
	case "underride":
		return &rs.Underride
	}
	return nil
}

// IsServerDefault reports whether ruleID is in the namespace the spec reserves for
// server-default rules.
func IsServerDefault(ruleID string) bool {
	return strings.HasPrefix(ruleID, ".")
}

// IndexOfRule returns the index of the rule with ruleID in rules, or -1.
func IndexOfRule(rules []Rule, ruleID string) int {
	return slices.IndexFunc(rules, func(r Rule) bool { return r.RuleID == ruleID })
}

// UserRulesStart is the index of the most important user-defined rule's place in a list:
// just after .m.rule.master.
func UserRulesStart(rules []Rule) int {
	if len(rules) > 0 && rules[0].RuleID == MasterRuleID {
		return 1
	}
	return 0
}

// CleanActions strips the historical actions dont_notify and coalesce, which "Clients and
// homeservers MUST ignore". It reports false when an action is neither a string nor an object.
func CleanActions(actions []any) ([]any, bool) {
	out := make([]any, 0, len(actions))
	for _, a := range actions {
		switch a := a.(type) {
		case string:
			if a == "dont_notify" || a == "coalesce" {
				continue
			}
		case map[string]any:
		default:
			return nil, false
		}
		out = append(out, a)
	}
	return out, true
}

// CopyRoomRules gives newRoomID a copy of each of the user's rules that applies to oldRoomID
// alone, for a room upgrade ("When a user joins the new room, the server should
// automatically transfer/replicate some of the user's personalized settings such as
// notifications", room_upgrades.md): the room rule named by oldRoomID, and every
// user-defined override and underride rule with an event_match condition on room_id equal to
// oldRoomID. A copy takes the original's enabled state and actions, is placed just before
// the original, and is named after it with oldRoomID replaced by newRoomID (or with
// "-" and newRoomID appended when its name does not contain oldRoomID). A rule the new room
// already has is left alone. CopyRoomRules reports whether it added a rule.
func CopyRoomRules(rules *Rules, oldRoomID, newRoomID string) bool {
	changed := false
	if i := IndexOfRule(rules.Global.Room, oldRoomID); i >= 0 && IndexOfRule(rules.Global.Room, newRoomID) < 0 {
		c := rules.Global.Room[i]
		c.RuleID = newRoomID
		rules.Global.Room = slices.Insert(rules.Global.Room, i, c)
		changed = true
	}
	for _, list := range []*[]Rule{&rules.Global.Override, &rules.Global.Underride} {
		for i := 0; i < len(*list); i++ {
			r := (*list)[i]
			if r.Default || !namesRoom(r.Conditions, oldRoomID) {
				continue
			}
			id := strings.ReplaceAll(r.RuleID, oldRoomID, newRoomID)
			if id == r.RuleID {
				id = r.RuleID + "-" + newRoomID
			}
			if IndexOfRule(*list, id) >= 0 {
				continue
			}
			c := r
			c.RuleID = id
			c.Actions = slices.Clone(r.Actions)
			c.Conditions = make([]Condition, len(r.Conditions))
			for j, cond := range r.Conditions {
				if cond.Kind == "event_match" && cond.Key == "room_id" && cond.Pattern != nil && *cond.Pattern == oldRoomID {
					cond.Pattern = &newRoomID
				}
				c.Conditions[j] = cond
			}
			*list = slices.Insert(*list, i, c)
			i++ // skip the original, now after its copy
			changed = true
		}
	}
	return changed
}

// namesRoom reports whether conds include an event_match on room_id with exactly roomID.
func namesRoom(conds []Condition, roomID string) bool {
	return slices.ContainsFunc(conds, func(c Condition) bool {
		return c.Kind == "event_match" && c.Key == "room_id" && c.Pattern != nil && *c.Pattern == roomID
	})
}
