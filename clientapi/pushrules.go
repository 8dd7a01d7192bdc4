package clientapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// pushRulesType is the global account data type that holds a user's push rules; /sync delivers
// it to every client of the user when it changes.
const pushRulesType = "m.push_rules"

// masterRuleID is the one server-default rule that outranks user-defined rules.
const masterRuleID = ".m.rule.master"

// PushRules is the content of the m.push_rules account data event and the response of
// GET /pushrules/: the rulesets by scope. The only scope is "global".
type PushRules struct {
	Global PushRuleset `json:"global"`
}

// PushRuleset holds the rules of each kind, each list most important first. The kinds are
// checked in field order: override, content, room, sender, underride.
type PushRuleset struct {
	Override  []PushRule `json:"override"`
	Content   []PushRule `json:"content"`
	Room      []PushRule `json:"room"`
	Sender    []PushRule `json:"sender"`
	Underride []PushRule `json:"underride"`
}

// PushRule is one push rule (definitions/push_rule.yaml).
type PushRule struct {
	RuleID  string `json:"rule_id"`
	Default bool   `json:"default"`
	Enabled bool   `json:"enabled"`
	// Conditions is non-nil, possibly empty, for override and underride rules only. A room
	// rule matches the room named by its RuleID, a sender rule the user named by it.
	Conditions []PushCondition `json:"conditions,omitzero"`
	// Actions are strings ("notify") or objects ({"set_tweak": "sound", "value": "default"}).
	Actions []any `json:"actions"`
	// Pattern is the glob matched against content.body, for content rules only.
	Pattern string `json:"pattern,omitempty"`
}

// PushCondition is one condition of an override or underride rule
// (definitions/push_condition.yaml). Which fields are set depends on Kind.
type PushCondition struct {
	Kind string `json:"kind"`
	Key  string `json:"key,omitempty"`
	// Pattern is a pointer because the empty pattern is meaningful (state_key "").
	Pattern *string `json:"pattern,omitempty"`
	Is      string  `json:"is,omitempty"`
	// Value is the JSON value of event_property_is and event_property_contains, kept raw
	// so that null, false and 0 survive.
	Value json.RawMessage `json:"value,omitempty"`
}

// DefaultPushRules returns the server-default rule set of userID: the spec's predefined rules,
// in the spec's order, with the user's ID written where the spec says so.
func DefaultPushRules(userID string) PushRules {
	return PushRules{Global: PushRuleset{
		Override:  defaultOverrideRules(userID),
		Content:   []PushRule{},
		Room:      []PushRule{},
		Sender:    []PushRule{},
		Underride: defaultUnderrideRules(),
	}}
}

var pushRuleKinds = []string{"override", "content", "room", "sender", "underride"}

// kind returns the list of the given kind, or nil for an unknown kind.
func (rs *PushRuleset) kind(kind string) *[]PushRule {
	switch kind {
	case "override":
		return &rs.Override
	case "content":
		return &rs.Content
	case "room":
		return &rs.Room
	case "sender":
		return &rs.Sender
	case "underride":
		return &rs.Underride
	}
	return nil
}

// isServerDefault reports whether ruleID is in the namespace the spec reserves for
// server-default rules.
func isServerDefault(ruleID string) bool {
	return strings.HasPrefix(ruleID, ".")
}

func indexOfRule(rules []PushRule, ruleID string) int {
	return slices.IndexFunc(rules, func(r PushRule) bool { return r.RuleID == ruleID })
}

var errPushRuleNotFound = spec.NotFound("The push rule was not found.")

// pushRuleRoutes lists the push rule endpoints (/pushrules).
func (s *Server) pushRuleRoutes() []route {
	const get, put, del = http.MethodGet, http.MethodPut, http.MethodDelete
	const rule = "/pushrules/{scope}/{kind}/{ruleId}"
	return []route{
		{get, "/pushrules", true, false, s.handleGetPushRules},
		{get, "/pushrules/", true, false, s.handleGetPushRules},
		{get, "/pushrules/{scope}", true, false, s.handleGetPushRuleset},
		{get, "/pushrules/{scope}/", true, false, s.handleGetPushRuleset},
		{get, rule, true, false, s.handleGetPushRule},
		{put, rule, true, false, s.handleSetPushRule},
		{del, rule, true, false, s.handleDeletePushRule},
		{get, rule + "/enabled", true, false, s.handleGetPushRuleEnabled},
		{put, rule + "/enabled", true, false, s.handleSetPushRuleEnabled},
		{get, rule + "/actions", true, false, s.handleGetPushRuleActions},
		{put, rule + "/actions", true, false, s.handleSetPushRuleActions},
	}
}

// handleGetPushRules handles GET /pushrules/.
func (s *Server) handleGetPushRules(r *http.Request) (any, error) {
	return loadPushRules(r.Context(), &s.db.Q, httputil.Device(r.Context()).UserID)
}

// handleGetPushRuleset handles GET /pushrules/global/.
func (s *Server) handleGetPushRuleset(r *http.Request) (any, error) {
	if err := checkPushRuleScope(r); err != nil {
		return nil, err
	}
	rules, err := loadPushRules(r.Context(), &s.db.Q, httputil.Device(r.Context()).UserID)
	if err != nil {
		return nil, err
	}
	return rules.Global, nil
}

// handleGetPushRule handles GET /pushrules/global/{kind}/{ruleId}.
func (s *Server) handleGetPushRule(r *http.Request) (any, error) {
	return s.pushRule(r)
}

// handleGetPushRuleEnabled handles GET /pushrules/global/{kind}/{ruleId}/enabled.
func (s *Server) handleGetPushRuleEnabled(r *http.Request) (any, error) {
	rule, err := s.pushRule(r)
	if err != nil {
		return nil, err
	}
	return map[string]bool{"enabled": rule.Enabled}, nil
}

// handleGetPushRuleActions handles GET /pushrules/global/{kind}/{ruleId}/actions.
func (s *Server) handleGetPushRuleActions(r *http.Request) (any, error) {
	rule, err := s.pushRule(r)
	if err != nil {
		return nil, err
	}
	return map[string]any{"actions": rule.Actions}, nil
}

// handleSetPushRule handles PUT /pushrules/global/{kind}/{ruleId}: it creates a user-defined
// rule, or updates one keeping its enabled state, placed by the before or after query
// parameter (before wins when both are given).
func (s *Server) handleSetPushRule(r *http.Request) (any, error) {
	kind, ruleID, err := pushRulePath(r)
	if err != nil {
		return nil, err
	}
	if isServerDefault(ruleID) {
		return nil, spec.InvalidParam("rule IDs starting with '.' are reserved for server-default rules")
	}
	if strings.ContainsAny(ruleID, `/\`) {
		return nil, spec.InvalidParam("rule IDs cannot contain slashes or backslashes")
	}
	rule, err := decodePushRule(r, kind, ruleID)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	return struct{}{}, s.updatePushRules(r, kind, func(rules *[]PushRule) error {
		return placePushRule(rules, rule, q.Get("before"), q.Get("after"))
	})
}

// handleDeletePushRule handles DELETE /pushrules/global/{kind}/{ruleId}.
func (s *Server) handleDeletePushRule(r *http.Request) (any, error) {
	kind, ruleID, err := pushRulePath(r)
	if err != nil {
		return nil, err
	}
	return struct{}{}, s.updatePushRules(r, kind, func(rules *[]PushRule) error {
		i := indexOfRule(*rules, ruleID)
		if i < 0 {
			return errPushRuleNotFound
		}
		if (*rules)[i].Default {
			return spec.InvalidParam("server-default push rules cannot be deleted")
		}
		*rules = slices.Delete(*rules, i, i+1)
		return nil
	})
}

// handleSetPushRuleEnabled handles PUT /pushrules/global/{kind}/{ruleId}/enabled.
func (s *Server) handleSetPushRuleEnabled(r *http.Request) (any, error) {
	kind, ruleID, err := pushRulePath(r)
	if err != nil {
		return nil, err
	}
	var body struct {
		Enabled *bool `json:"enabled"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.Enabled == nil {
		return nil, spec.MissingParam("enabled is required")
	}
	return struct{}{}, s.updatePushRule(r, kind, ruleID, func(rule *PushRule) {
		rule.Enabled = *body.Enabled
	})
}

// handleSetPushRuleActions handles PUT /pushrules/global/{kind}/{ruleId}/actions. It also
// changes the actions of server-default rules.
func (s *Server) handleSetPushRuleActions(r *http.Request) (any, error) {
	kind, ruleID, err := pushRulePath(r)
	if err != nil {
		return nil, err
	}
	var body struct {
		Actions []any `json:"actions"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	actions, err := checkPushActions(body.Actions)
	if err != nil {
		return nil, err
	}
	return struct{}{}, s.updatePushRule(r, kind, ruleID, func(rule *PushRule) {
		rule.Actions = actions
	})
}

func checkPushRuleScope(r *http.Request) error {
	if httputil.PathVar(r, "scope") != "global" {
		return spec.InvalidParam("unknown push rule scope: the only scope is global")
	}
	return nil
}

// pushRulePath returns the checked {kind} and the {ruleId} of the path.
func pushRulePath(r *http.Request) (kind, ruleID string, err error) {
	if err := checkPushRuleScope(r); err != nil {
		return "", "", err
	}
	kind = httputil.PathVar(r, "kind")
	if !slices.Contains(pushRuleKinds, kind) {
		return "", "", spec.InvalidParam("unknown push rule kind " + kind)
	}
	return kind, httputil.PathVar(r, "ruleId"), nil
}

// pushRule returns the rule named by the path.
func (s *Server) pushRule(r *http.Request) (*PushRule, error) {
	kind, ruleID, err := pushRulePath(r)
	if err != nil {
		return nil, err
	}
	rules, err := loadPushRules(r.Context(), &s.db.Q, httputil.Device(r.Context()).UserID)
	if err != nil {
		return nil, err
	}
	list := *rules.Global.kind(kind)
	i := indexOfRule(list, ruleID)
	if i < 0 {
		return nil, errPushRuleNotFound
	}
	return &list[i], nil
}

func loadPushRules(ctx context.Context, q *storage.Q, userID string) (PushRules, error) {
	content, err := q.AccountDataEntry(ctx, userID, "", pushRulesType)
	if errors.Is(err, storage.ErrNotFound) {
		content = ""
	} else if err != nil {
		return PushRules{}, err
	}
	return ParsePushRules(userID, content)
}

// updatePushRules applies change to the requester's rules of one kind and stores the whole
// rule set back as account data. The read and the write share one write transaction, so that
// concurrent changes by the same user are not lost.
func (s *Server) updatePushRules(r *http.Request, kind string, change func(rules *[]PushRule) error) error {
	ctx, userID := r.Context(), httputil.Device(r.Context()).UserID
	var pos int64
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		rules, err := loadPushRules(ctx, &tx.Q, userID)
		if err != nil {
			return err
		}
		if err := change(rules.Global.kind(kind)); err != nil {
			return err
		}
		content, err := json.Marshal(rules)
		if err != nil {
			return fmt.Errorf("encode %s of %s: %w", pushRulesType, userID, err)
		}
		pos, err = tx.SetAccountData(ctx, userID, "", pushRulesType, string(content))
		return err
	})
	if err == nil && s.waker != nil {
		s.waker.Wake(storage.StreamAccountData, pos, []string{userID})
	}
	return err
}

// updatePushRule applies change to one existing rule, default or user-defined.
func (s *Server) updatePushRule(r *http.Request, kind, ruleID string, change func(rule *PushRule)) error {
	return s.updatePushRules(r, kind, func(rules *[]PushRule) error {
		i := indexOfRule(*rules, ruleID)
		if i < 0 {
			return errPushRuleNotFound
		}
		change(&(*rules)[i])
		return nil
	})
}

// placePushRule inserts or replaces rule in rules. A new rule without before or after becomes
// the most important user-defined rule; an updated one keeps its place. Rules can only be
// placed relative to user-defined rules.
func placePushRule(rules *[]PushRule, rule PushRule, before, after string) error {
	list := *rules
	if i := indexOfRule(list, rule.RuleID); i >= 0 {
		rule.Enabled = list[i].Enabled
		if before == "" && after == "" {
			list[i] = rule
			return nil
		}
		list = slices.Delete(list, i, i+1)
	}
	at := userRulesStart(list)
	if rel := cmp.Or(before, after); rel != "" {
		if isServerDefault(rel) {
			return spec.InvalidParam("a rule cannot be placed relative to a server-default rule")
		}
		j := indexOfRule(list, rel)
		if j < 0 {
			// The spec's example error for this case.
			return httputil.Errorf(http.StatusBadRequest, "M_UNKNOWN", "before/after rule not found: %s", rel)
		}
		at = j
		if before == "" {
			at = j + 1
		}
	}
	*rules = slices.Insert(list, at, rule)
	return nil
}

// decodePushRule reads the body of PUT /pushrules/global/{kind}/{ruleId}. Only the fields
// that apply to the kind are kept: conditions for override and underride, pattern for content.
func decodePushRule(r *http.Request, kind, ruleID string) (PushRule, error) {
	var body struct {
		Actions    []any           `json:"actions"`
		Conditions []PushCondition `json:"conditions"`
		Pattern    string          `json:"pattern"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return PushRule{}, err
	}
	actions, err := checkPushActions(body.Actions)
	if err != nil {
		return PushRule{}, err
	}
	// "When creating push rules, they MUST be enabled by default."
	rule := PushRule{RuleID: ruleID, Enabled: true, Actions: actions}
	switch kind {
	case "override", "underride":
		// A rule with no conditions always matches.
		rule.Conditions = []PushCondition{}
		for _, c := range body.Conditions {
			if c.Kind == "" {
				return PushRule{}, spec.BadJSON("every condition needs a kind")
			}
			rule.Conditions = append(rule.Conditions, c)
		}
	case "content":
		if body.Pattern == "" {
			return PushRule{}, spec.MissingParam("content rules need a pattern")
		}
		rule.Pattern = body.Pattern
	}
	return rule, nil
}

// checkPushActions checks that actions is present and each action a string or an object,
// and strips the historical actions dont_notify and coalesce, which "Clients and homeservers
// MUST ignore".
func checkPushActions(actions []any) ([]any, error) {
	if actions == nil {
		return nil, spec.MissingParam("actions is required")
	}
	out := make([]any, 0, len(actions))
	for _, a := range actions {
		switch a := a.(type) {
		case string:
			if a == "dont_notify" || a == "coalesce" {
				continue
			}
		case map[string]any:
		default:
			return nil, spec.BadJSON("each action must be a string or an object")
		}
		out = append(out, a)
	}
	return out, nil
}
