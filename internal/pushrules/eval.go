package pushrules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Event is an event prepared for rule evaluation: its JSON decoded once, so that one event
// can be evaluated against the rules of many users.
type Event struct {
	fields map[string]any
}

// NewEvent decodes an event's JSON (a PDU or a client event) for evaluation.
func NewEvent(eventJSON []byte) (*Event, error) {
	d := json.NewDecoder(bytes.NewReader(eventJSON))
	d.UseNumber()
	var fields map[string]any
	if err := d.Decode(&fields); err != nil {
		return nil, fmt.Errorf("decode event for push rules: %w", err)
	}
	return &Event{fields: fields}, nil
}

// Str returns the string at a dot-separated path of the event, or "".
func (e *Event) Str(path string) string {
	v, _ := e.property(path)
	s, _ := v.(string)
	return s
}

// property returns the value at the dot-separated path (appendices: "Dot-separated property
// paths"), and false when it is absent.
func (e *Event) property(path string) (any, bool) {
	var cur any = e.fields
	for _, name := range splitPath(path) {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[name]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// stringProperty returns the string at path, and false when it is absent or not a string.
func (e *Event) stringProperty(path string) (string, bool) {
	v, _ := e.property(path)
	s, ok := v.(string)
	return s, ok
}

// splitPath splits a dot-separated property path: `\.` is a literal dot and `\\` a literal
// backslash; any other backslash is kept as it is.
func splitPath(path string) []string {
	if !strings.Contains(path, `\`) {
		return strings.Split(path, ".")
	}
	var parts []string
	var b strings.Builder
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case c == '\\' && i+1 < len(path) && (path[i+1] == '.' || path[i+1] == '\\'):
			b.WriteByte(path[i+1])
			i++
		case c == '.':
			parts = append(parts, b.String())
			b.Reset()
		default:
			b.WriteByte(c)
		}
	}
	return append(parts, b.String())
}

// EvalContext is what evaluation needs to know beyond the event and the rules: whose rules
// they are and the room at the event.
type EvalContext struct {
	UserID string
	RoomID string
	// MemberCount is the number of joined members of the room.
	MemberCount int
	// SenderPowerLevel is the sender's power level; NotificationLevels the power levels'
	// "notifications" object (a missing "room" key means 50).
	SenderPowerLevel   int64
	NotificationLevels map[string]int64
	// DisplayName returns the user's display name in the room ("" when none). It is called
	// only for the deprecated contains_display_name condition; nil means none.
	DisplayName func() string
	// InThread is whether the event is part of a thread, ThreadSubscribed whether the user
	// is subscribed to it (MSC4306's thread_subscription condition).
	InThread, ThreadSubscribed bool
}

// Evaluate runs the rules against the event in the spec's order (override, content, then
// MSC4306's postcontent, room, sender, underride): the first enabled rule that matches decides. It returns whether the event
// notifies the user, whether it is highlighted, and the matching rule's actions (nil when no
// rule matches). The caller leaves out events the user sent.
func Evaluate(rules *Rules, ev *Event, ec EvalContext) (notify, highlight bool, actions []any) {
	rule := match(rules, ev, &ec)
	if rule == nil {
		return false, false, nil
	}
	actions, _ = CleanActions(rule.Actions)
	notify, highlight = ActionFlags(actions)
	return notify, highlight, actions
}

// ActionFlags returns whether actions contain notify and set the highlight tweak to true
// (a highlight tweak without value means true).
func ActionFlags(actions []any) (notify, highlight bool) {
	for _, a := range actions {
		switch a := a.(type) {
		case string:
			notify = notify || a == ActionNotify
		case map[string]any:
			if a["set_tweak"] != "highlight" {
				continue
			}
			v, ok := a["value"]
			if !ok {
				highlight = true
			} else if b, isBool := v.(bool); isBool {
				highlight = b
			}
		}
	}
	return notify, highlight
}

func match(rules *Rules, ev *Event, ec *EvalContext) *Rule {
	g := &rules.Global
	for i := range g.Override {
		if r := &g.Override[i]; r.Enabled && conditionsHold(r.Conditions, ev, ec) {
			return r
		}
	}
	for i := range g.Content {
		if r := &g.Content[i]; r.Enabled && r.Pattern != "" && bodyMatches(ev, r.Pattern) {
			return r
		}
	}
	for i := range g.PostContent {
		if r := &g.PostContent[i]; r.Enabled && conditionsHold(r.Conditions, ev, ec) {
			return r
		}
	}
	for i := range g.Room {
		if r := &g.Room[i]; r.Enabled && r.RuleID == ec.RoomID {
			return r
		}
	}
	sender := ev.Str("sender")
	for i := range g.Sender {
		if r := &g.Sender[i]; r.Enabled && r.RuleID == sender {
			return r
		}
	}
	for i := range g.Underride {
		if r := &g.Underride[i]; r.Enabled && conditionsHold(r.Conditions, ev, ec) {
			return r
		}
	}
	return nil
}

// conditionsHold reports whether every condition holds (a rule without conditions matches).
func conditionsHold(conds []Condition, ev *Event, ec *EvalContext) bool {
	for i := range conds {
		if !conditionHolds(&conds[i], ev, ec) {
			return false
		}
	}
	return true
}

// conditionHolds evaluates one condition; unrecognised conditions never match.
func conditionHolds(c *Condition, ev *Event, ec *EvalContext) bool {
	switch c.Kind {
	case "event_match":
		if c.Pattern == nil {
			return false
		}
		v, ok := ev.stringProperty(c.Key)
		if !ok {
			return false
		}
		if c.Key == "content.body" {
			return globWords(*c.Pattern, v)
		}
		return globWhole(*c.Pattern, v)
	case "event_property_is":
		want, ok := scalar(c.Value)
		got, present := ev.property(c.Key)
		return ok && present && scalarEqual(got, want)
	case "event_property_contains":
		want, ok := scalar(c.Value)
		if !ok {
			return false
		}
		v, _ := ev.property(c.Key)
		arr, _ := v.([]any)
		for _, v := range arr {
			if scalarEqual(v, want) {
				return true
			}
		}
		return false
	case "contains_display_name":
		if ec.DisplayName == nil {
			return false
		}
		name := ec.DisplayName()
		body, ok := ev.stringProperty("content.body")
		return ok && name != "" && wordsRegexp(regexp.QuoteMeta(name)).MatchString(body)
	case "room_member_count":
		return memberCountIs(c.Is, ec.MemberCount)
	case ThreadSubscriptionCondition, "thread_subscription":
		// Holds for an event of a thread the user is (or is not) subscribed to.
		return c.Subscribed != nil && ec.InThread && ec.ThreadSubscribed == *c.Subscribed
	case "sender_notification_permission":
		need, ok := ec.NotificationLevels[c.Key]
		if !ok {
			if c.Key != "room" {
				return false
			}
			need = 50
		}
		return ec.SenderPowerLevel >= need
	}
	return false
}

// bodyMatches is the predefined condition of content rules.
func bodyMatches(ev *Event, pattern string) bool {
	body, ok := ev.stringProperty("content.body")
	return ok && globWords(pattern, body)
}

// memberCountIs evaluates room_member_count's "is": a decimal integer optionally prefixed by
// ==, <, >, >= or <=.
func memberCountIs(is string, n int) bool {
	op := "=="
	for _, p := range []string{"==", "<=", ">=", "<", ">"} {
		if strings.HasPrefix(is, p) {
			op, is = p, is[len(p):]
			break
		}
	}
	want, err := strconv.Atoi(is)
	if err != nil {
		return false
	}
	switch op {
	case "<":
		return n < want
	case ">":
		return n > want
	case "<=":
		return n <= want
	case ">=":
		return n >= want
	}
	return n == want
}

// scalar decodes a condition value: a string, an integer, a boolean or null.
func scalar(raw json.RawMessage) (any, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, false
	}
	switch v.(type) {
	case nil, string, bool, json.Number:
		return v, true
	}
	return nil, false
}

// scalarEqual compares an event value with a condition value exactly, without casting types;
// numbers must be integers (canonical JSON has no others).
func scalarEqual(got, want any) bool {
	switch w := want.(type) {
	case nil:
		return got == nil
	case string:
		g, ok := got.(string)
		return ok && g == w
	case bool:
		g, ok := got.(bool)
		return ok && g == w
	case json.Number:
		g, ok := got.(json.Number)
		if !ok {
			return false
		}
		gi, err1 := g.Int64()
		wi, err2 := w.Int64()
		return err1 == nil && err2 == nil && gi == wi
	}
	return false
}

// globWhole reports whether the glob pattern (* and ?) matches the whole value,
// case-insensitively.
func globWhole(pattern, value string) bool {
	if !strings.ContainsAny(pattern, "*?") {
		return strings.EqualFold(pattern, value)
	}
	return compiled("^" + globRegexp(pattern) + "$").MatchString(value)
}

// globWords reports whether the glob pattern matches a substring of value that starts and
// ends at a word boundary: the start or end of the value, or a character not in [A-Za-z0-9_].
func globWords(pattern, value string) bool {
	return wordsRegexp(globRegexp(pattern)).MatchString(value)
}

func wordsRegexp(expr string) *regexp.Regexp {
	return compiled(`(?:^|[^A-Za-z0-9_])` + expr + `(?:[^A-Za-z0-9_]|$)`)
}

// globRegexp translates a glob into a regular expression: * is any run of characters, ? one.
func globRegexp(pattern string) string {
	var b strings.Builder
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	return b.String()
}

// regexps caches compiled patterns: the same few rules are evaluated for every event.
var regexps = struct {
	sync.Mutex // guards m
	m          map[string]*regexp.Regexp
}{m: map[string]*regexp.Regexp{}}

const maxCachedRegexps = 4096

func compiled(expr string) *regexp.Regexp {
	regexps.Lock()
	defer regexps.Unlock()
	if re, ok := regexps.m[expr]; ok {
		return re
	}
	re := regexp.MustCompile(`(?is)` + expr) // every part is quoted or a fixed construct
	if len(regexps.m) >= maxCachedRegexps {
		clear(regexps.m)
	}
	regexps.m[expr] = re
	return re
}
