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
	"github.com/lattice-chat/lattice/internal/pushrules"
	"github.com/lattice-chat/lattice/storage"
)

var pushRuleKinds = pushrules.Kinds

var errPushRuleNotFound = spec.NotFound("The push rule was not found.")

// pushRuleRoutes lists the push notification endpoints: /pushrules, /pushers (pushers.go)
// and /notifications (notifications.go).
func (s *Server) pushRuleRoutes() []route {
	const get, put, del, post = http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPost
	const rule = "/pushrules/{scope}/{kind}/{ruleId}"
	return []route{
		{get, "/pushers", true, false, s.handleGetPushers},
		{post, "/pushers/set", true, false, s.handleSetPusher},
		{get, "/notifications", true, false, s.handleNotifications},
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
	if pushrules.IsServerDefault(ruleID) {
		return nil, spec.InvalidParam("rule IDs starting with '.' are reserved for server-default rules")
	}
	if kind == pushrules.ServerOnlyKind {
		return nil, spec.InvalidParam("rules of kind postcontent cannot be created (MSC4306)")
	}
	if strings.ContainsAny(ruleID, `/\`) {
		return nil, spec.InvalidParam("rule IDs cannot contain slashes or backslashes")
	}
	rule, err := decodePushRule(r, kind, ruleID)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	return struct{}{}, s.updatePushRules(r, kind, func(rules *[]pushrules.Rule) error {
		return placePushRule(rules, rule, q.Get("before"), q.Get("after"))
	})
}

// handleDeletePushRule handles DELETE /pushrules/global/{kind}/{ruleId}.
func (s *Server) handleDeletePushRule(r *http.Request) (any, error) {
	kind, ruleID, err := pushRulePath(r)
	if err != nil {
		return nil, err
	}
	return struct{}{}, s.updatePushRules(r, kind, func(rules *[]pushrules.Rule) error {
		i := pushrules.IndexOfRule(*rules, ruleID)
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
	return struct{}{}, s.updatePushRule(r, kind, ruleID, func(rule *pushrules.Rule) {
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
	return struct{}{}, s.updatePushRule(r, kind, ruleID, func(rule *pushrules.Rule) {
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
func (s *Server) pushRule(r *http.Request) (*pushrules.Rule, error) {
	kind, ruleID, err := pushRulePath(r)
	if err != nil {
		return nil, err
	}
	rules, err := loadPushRules(r.Context(), &s.db.Q, httputil.Device(r.Context()).UserID)
	if err != nil {
		return nil, err
	}
	list := *rules.Global.Kind(kind)
	i := pushrules.IndexOfRule(list, ruleID)
	if i < 0 {
		return nil, errPushRuleNotFound
	}
	return &list[i], nil
}

func loadPushRules(ctx context.Context, q *storage.Q, userID string) (pushrules.Rules, error) {
	content, err := q.AccountDataEntry(ctx, userID, "", pushrules.AccountDataType)
	if errors.Is(err, storage.ErrNotFound) {
		content = ""
	} else if err != nil {
		return pushrules.Rules{}, err
	}
	return pushrules.Parse(userID, content)
}

// updatePushRules applies change to the requester's rules of one kind and stores the whole
// rule set back as account data.
func (s *Server) updatePushRules(r *http.Request, kind string, change func(rules *[]pushrules.Rule) error) error {
	return s.changePushRules(r.Context(), httputil.Device(r.Context()).UserID, func(rules *pushrules.Rules) (bool, error) {
		return true, change(rules.Global.Kind(kind))
	})
}

// changePushRules applies change to userID's rules and, when it reports a change, stores the
// whole rule set back as account data. The read and the write share one write transaction,
// so that concurrent changes by the same user are not lost.
func (s *Server) changePushRules(ctx context.Context, userID string, change func(rules *pushrules.Rules) (bool, error)) error {
	var pos int64
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		rules, err := loadPushRules(ctx, &tx.Q, userID)
		if err != nil {
			return err
		}
		if changed, err := change(&rules); err != nil || !changed {
			return err
		}
		content, err := json.Marshal(rules)
		if err != nil {
			return fmt.Errorf("encode %s of %s: %w", pushrules.AccountDataType, userID, err)
		}
		pos, err = tx.SetAccountData(ctx, userID, "", pushrules.AccountDataType, string(content))
		return err
	})
	if err == nil && pos > 0 && s.waker != nil {
		s.waker.Wake(storage.StreamAccountData, pos, []string{userID})
	}
	return err
}

// inheritPushRules copies userID's rules for the room that roomID replaces, if any, to
// roomID: called when the user joins roomID (see pushrules.CopyRoomRules).
func (s *Server) inheritPushRules(ctx context.Context, userID, roomID string) error {
	old, err := s.rooms.Predecessor(ctx, roomID)
	if err != nil || old == "" {
		return err
	}
	return s.changePushRules(ctx, userID, func(rules *pushrules.Rules) (bool, error) {
		return pushrules.CopyRoomRules(rules, old, roomID), nil
	})
}

// updatePushRule applies change to one existing rule, default or user-defined.
func (s *Server) updatePushRule(r *http.Request, kind, ruleID string, change func(rule *pushrules.Rule)) error {
	return s.updatePushRules(r, kind, func(rules *[]pushrules.Rule) error {
		i := pushrules.IndexOfRule(*rules, ruleID)
		if i < 0 {
			return errPushRuleNotFound
		}
		change(&(*rules)[i])
		if kind == "underride" && (*rules)[i].Default {
			// MSC3930: the poll rules follow the message rules they mirror, and the other way.
			for _, id := range pushrules.Mirrored(ruleID) {
				if j := pushrules.IndexOfRule(*rules, id); j >= 0 && j != i {
					change(&(*rules)[j])
				}
			}
		}
		return nil
	})
}

// placePushRule inserts or replaces rule in rules. A new rule without before or after becomes
// the most important user-defined rule; an updated one keeps its place. Rules can only be
// placed relative to user-defined rules.
func placePushRule(rules *[]pushrules.Rule, rule pushrules.Rule, before, after string) error {
	list := *rules
	if i := pushrules.IndexOfRule(list, rule.RuleID); i >= 0 {
		rule.Enabled = list[i].Enabled
		if before == "" && after == "" {
			list[i] = rule
			return nil
		}
		list = slices.Delete(list, i, i+1)
	}
	at := pushrules.UserRulesStart(list)
	if rel := cmp.Or(before, after); rel != "" {
		if pushrules.IsServerDefault(rel) {
			return spec.InvalidParam("a rule cannot be placed relative to a server-default rule")
		}
		j := pushrules.IndexOfRule(list, rel)
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
func decodePushRule(r *http.Request, kind, ruleID string) (pushrules.Rule, error) {
	var body struct {
		Actions    []any                 `json:"actions"`
		Conditions []pushrules.Condition `json:"conditions"`
		Pattern    string                `json:"pattern"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return pushrules.Rule{}, err
	}
	actions, err := checkPushActions(body.Actions)
	if err != nil {
		return pushrules.Rule{}, err
	}
	// "When creating push rules, they MUST be enabled by default."
	rule := pushrules.Rule{RuleID: ruleID, Enabled: true, Actions: actions}
	switch kind {
	case "override", "underride":
		// A rule with no conditions always matches.
		rule.Conditions = []pushrules.Condition{}
		for _, c := range body.Conditions {
			if c.Kind == "" {
				return pushrules.Rule{}, spec.BadJSON("every condition needs a kind")
			}
			rule.Conditions = append(rule.Conditions, c)
		}
	case "content":
		if body.Pattern == "" {
			return pushrules.Rule{}, spec.MissingParam("content rules need a pattern")
		}
		rule.Pattern = body.Pattern
	}
	return rule, nil
}

// checkPushActions checks that actions is present and each action a string or an object.
// The historical actions dont_notify and coalesce are kept as sent: "Clients and homeservers
// MUST ignore these actions" (push.md, "Historical Actions"), which evaluation does, and
// clients that still send ["dont_notify"] to mute a room read their rule back unchanged.
func checkPushActions(actions []any) ([]any, error) {
	if actions == nil {
		return nil, spec.MissingParam("actions is required")
	}
	if _, ok := pushrules.CleanActions(actions); !ok {
		return nil, spec.BadJSON("each action must be a string or an object")
	}
	return actions, nil
}
