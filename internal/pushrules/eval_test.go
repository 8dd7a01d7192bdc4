package pushrules

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const bob = "@bob:example.org"

func event(t *testing.T, js string) *Event {
	t.Helper()
	ev, err := NewEvent([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestEvaluateDefaults runs the spec's default rules for bob on the events of the spec's
// examples.
func TestEvaluateDefaults(t *testing.T) {
	group := EvalContext{UserID: bob, RoomID: "!r:example.org", MemberCount: 5, SenderPowerLevel: 0}
	dm := group
	dm.MemberCount = 2
	mod := group
	mod.SenderPowerLevel = 50
	cases := []struct {
		name              string
		ctx               EvalContext
		event             string
		notify, highlight bool
		actions           string
	}{
		{"DM message", dm, `{"type":"m.room.message","sender":"@a:x","content":{"msgtype":"m.text","body":"hi"}}`,
			true, false, `["notify",{"set_tweak":"sound","value":"default"}]`},
		{"group message", group, `{"type":"m.room.message","sender":"@a:x","content":{"msgtype":"m.text","body":"hi"}}`,
			true, false, `["notify"]`},
		{"user mention", group, `{"type":"m.room.message","sender":"@a:x","content":{"body":"bob: hi","m.mentions":{"user_ids":["@bob:example.org"]}}}`,
			true, true, `["notify",{"set_tweak":"sound","value":"default"},{"set_tweak":"highlight"}]`},
		{"mention of someone else", group, `{"type":"m.room.message","sender":"@a:x","content":{"body":"carol","m.mentions":{"user_ids":["@carol:example.org"]}}}`,
			true, false, `["notify"]`},
		{"@room by a moderator", mod, `{"type":"m.room.message","sender":"@a:x","content":{"body":"@room","m.mentions":{"room":true}}}`,
			true, true, `["notify",{"set_tweak":"highlight"}]`},
		{"@room without permission", group, `{"type":"m.room.message","sender":"@a:x","content":{"body":"@room","m.mentions":{"room":true}}}`,
			true, false, `["notify"]`},
		{"@room as a string is not true", mod, `{"type":"m.room.message","sender":"@a:x","content":{"body":"@room","m.mentions":{"room":"true"}}}`,
			true, false, `["notify"]`},
		{"notice", dm, `{"type":"m.room.message","sender":"@a:x","content":{"msgtype":"m.notice","body":"bot"}}`,
			false, false, `[]`},
		{"member event", group, `{"type":"m.room.member","sender":"@a:x","state_key":"@a:x","content":{"membership":"join"}}`,
			false, false, `[]`},
		{"invite for me", group, `{"type":"m.room.member","sender":"@a:x","state_key":"@bob:example.org","content":{"membership":"invite"}}`,
			true, false, `["notify",{"set_tweak":"sound","value":"default"}]`},
		{"edit", dm, `{"type":"m.room.message","sender":"@a:x","content":{"body":"* hi","m.new_content":{"body":"hi"},"m.relates_to":{"rel_type":"m.replace","event_id":"$e"}}}`,
			false, false, `[]`},
		{"reaction", dm, `{"type":"m.reaction","sender":"@a:x","content":{"m.relates_to":{"rel_type":"m.annotation","event_id":"$e","key":"👍"}}}`,
			false, false, `[]`},
		{"tombstone", group, `{"type":"m.room.tombstone","sender":"@a:x","state_key":"","content":{"replacement_room":"!n:x"}}`,
			true, true, `["notify",{"set_tweak":"highlight"}]`},
		{"encrypted DM", dm, `{"type":"m.room.encrypted","sender":"@a:x","content":{}}`,
			true, false, `["notify",{"set_tweak":"sound","value":"default"}]`},
		{"call", group, `{"type":"m.call.invite","sender":"@a:x","content":{}}`,
			true, false, `["notify",{"set_tweak":"sound","value":"ring"}]`},
		{"state event", group, `{"type":"m.room.topic","sender":"@a:x","state_key":"","content":{"topic":"x"}}`,
			false, false, `null`},
	}
	rules := Defaults(bob)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			notify, highlight, actions := Evaluate(&rules, event(t, c.event), c.ctx)
			if notify != c.notify || highlight != c.highlight {
				t.Errorf("notify, highlight = %v, %v; want %v, %v", notify, highlight, c.notify, c.highlight)
			}
			var want []any
			_ = json.Unmarshal([]byte(c.actions), &want)
			if d := cmp.Diff(want, actions); d != "" {
				t.Errorf("actions (-want +got):\n%s", d)
			}
		})
	}
}

// TestEvaluateUserRules checks the order of kinds and user-defined rules of each kind.
func TestEvaluateUserRules(t *testing.T) {
	msg := `{"type":"m.room.message","sender":"@spam:x","room_id":"!r:x","content":{"body":"Lunch at noon?"}}`
	ctx := EvalContext{UserID: bob, RoomID: "!r:x", MemberCount: 3}
	cases := []struct {
		name   string
		stored string
		notify bool
		hl     bool
	}{
		{"defaults", `{}`, true, false},
		{"master enabled", `{"global":{"override":[{"rule_id":".m.rule.master","enabled":true,"actions":[]}]}}`, false, false},
		{"room muted", `{"global":{"room":[{"rule_id":"!r:x","enabled":true,"actions":[]}]}}`, false, false},
		{"other room muted", `{"global":{"room":[{"rule_id":"!other:x","enabled":true,"actions":[]}]}}`, true, false},
		{"room rule disabled", `{"global":{"room":[{"rule_id":"!r:x","enabled":false,"actions":[]}]}}`, true, false},
		{"room muted with dont_notify", `{"global":{"room":[{"rule_id":"!r:x","enabled":true,"actions":["dont_notify"]}]}}`, false, false},
		{"sender muted", `{"global":{"sender":[{"rule_id":"@spam:x","enabled":true,"actions":[]}]}}`, false, false},
		{"content rule outranks room rule", `{"global":{"content":[{"rule_id":"l","enabled":true,"pattern":"lun?h","actions":["notify",{"set_tweak":"highlight","value":true}]}],
			"room":[{"rule_id":"!r:x","enabled":true,"actions":[]}]}}`, true, true},
		{"content rule needs word boundaries", `{"global":{"content":[{"rule_id":"l","enabled":true,"pattern":"unch","actions":["notify",{"set_tweak":"highlight"}]}]}}`, true, false},
		{"override room mute", `{"global":{"override":[{"rule_id":"mute","enabled":true,"conditions":[{"kind":"event_match","key":"room_id","pattern":"!r:x"}],"actions":[]}]}}`, false, false},
		{"unknown condition never matches", `{"global":{"override":[{"rule_id":"u","enabled":true,"conditions":[{"kind":"org.example.nope"}],"actions":[]}]}}`, true, false},
		{"highlight false", `{"global":{"override":[{"rule_id":"h","enabled":true,"conditions":[],"actions":["notify",{"set_tweak":"highlight","value":false}]}]}}`, true, false},
		{"display name", `{"global":{"override":[{"rule_id":"dn","enabled":true,"conditions":[{"kind":"contains_display_name"}],"actions":["notify",{"set_tweak":"highlight"}]}]}}`, true, true},
		{"member count", `{"global":{"override":[{"rule_id":"big","enabled":true,"conditions":[{"kind":"room_member_count","is":">=3"}],"actions":[]}]}}`, false, false},
		{"member count no match", `{"global":{"override":[{"rule_id":"big","enabled":true,"conditions":[{"kind":"room_member_count","is":"<3"}],"actions":[]}]}}`, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rules, err := Parse(bob, c.stored)
			if err != nil {
				t.Fatal(err)
			}
			ec := ctx
			ec.DisplayName = func() string { return "noon" }
			notify, hl, _ := Evaluate(&rules, event(t, msg), ec)
			if notify != c.notify || hl != c.hl {
				t.Errorf("notify, highlight = %v, %v; want %v, %v", notify, hl, c.notify, c.hl)
			}
		})
	}
}

// TestConditions checks event_match's glob semantics and the dotted paths, with the spec's
// examples.
func TestConditions(t *testing.T) {
	str := func(s string) *string { return &s }
	topic := func(v string) string {
		b, _ := json.Marshal(v)
		return `{"type":"m.room.topic","content":{"topic":` + string(b) + `}}`
	}
	body := func(v string) string {
		b, _ := json.Marshal(v)
		return `{"type":"m.room.message","content":{"body":` + string(b) + `}}`
	}
	cases := []struct {
		name  string
		cond  Condition
		event string
		want  bool
	}{
		{"topic glob", Condition{Kind: "event_match", Key: "content.topic", Pattern: str("lunc?*")}, topic("Lunch plans"), true},
		{"topic case", Condition{Kind: "event_match", Key: "content.topic", Pattern: str("lunc?*")}, topic("LUNCH"), true},
		{"topic leading space", Condition{Kind: "event_match", Key: "content.topic", Pattern: str("lunc?*")}, topic(" lunch"), false},
		{"topic ? needs a char", Condition{Kind: "event_match", Key: "content.topic", Pattern: str("lunc?*")}, topic("lunc"), false},
		{"topic null", Condition{Kind: "event_match", Key: "content.topic", Pattern: str("*")}, `{"content":{"topic":null}}`, false},
		{"absent with *", Condition{Kind: "event_match", Key: "content.nope", Pattern: str("*")}, topic("x"), false},
		{"body word", Condition{Kind: "event_match", Key: "content.body", Pattern: str("ex*ple")}, body("An example event."), true},
		{"body whole", Condition{Kind: "event_match", Key: "content.body", Pattern: str("ex*ple")}, body("exple"), true},
		{"body spans words", Condition{Kind: "event_match", Key: "content.body", Pattern: str("ex*ple")}, body("An exciting triple-whammy"), true},
		{"body inside a word", Condition{Kind: "event_match", Key: "content.body", Pattern: str("xampl")}, body("An example event."), false},
		{"regexp characters are literal", Condition{Kind: "event_match", Key: "content.topic", Pattern: str("a.c")}, topic("abc"), false},
		{"property is", Condition{Kind: "event_property_is", Key: `content.m\.federate`, Value: json.RawMessage(`true`)}, `{"content":{"m.federate":true}}`, true},
		{"property is no cast (string)", Condition{Kind: "event_property_is", Key: `content.m\.federate`, Value: json.RawMessage(`true`)}, `{"content":{"m.federate":"true"}}`, false},
		{"property is no cast (int)", Condition{Kind: "event_property_is", Key: `content.m\.federate`, Value: json.RawMessage(`true`)}, `{"content":{"m.federate":1}}`, false},
		{"property is null", Condition{Kind: "event_property_is", Key: `content.x`, Value: json.RawMessage(`null`)}, `{"content":{"x":null}}`, true},
		{"property is absent vs null", Condition{Kind: "event_property_is", Key: `content.y`, Value: json.RawMessage(`null`)}, `{"content":{"x":null}}`, false},
		{"property is int", Condition{Kind: "event_property_is", Key: `content.n`, Value: json.RawMessage(`3`)}, `{"content":{"n":3}}`, true},
		{"backslash path", Condition{Kind: "event_property_is", Key: `content.m\\foo`, Value: json.RawMessage(`1`)}, `{"content":{"m\\foo":1}}`, true},
		{"contains", Condition{Kind: "event_property_contains", Key: "content.alt_aliases", Value: json.RawMessage(`"#myroom:example.com"`)},
			`{"content":{"alt_aliases":["#somewhere:example.org","#myroom:example.com"]}}`, true},
		{"contains partial", Condition{Kind: "event_property_contains", Key: "content.alt_aliases", Value: json.RawMessage(`":example.com"`)},
			`{"content":{"alt_aliases":["#somewhere:example.org","#myroom:example.com"]}}`, false},
		{"contains not array", Condition{Kind: "event_property_contains", Key: "content.a", Value: json.RawMessage(`"x"`)}, `{"content":{"a":"x"}}`, false},
		{"permission custom key", Condition{Kind: "sender_notification_permission", Key: "custom"}, `{}`, true},
		{"permission unknown key", Condition{Kind: "sender_notification_permission", Key: "other"}, `{}`, false},
	}
	ec := EvalContext{SenderPowerLevel: 10, NotificationLevels: map[string]int64{"custom": 10}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := conditionHolds(&c.cond, event(t, c.event), &ec); got != c.want {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestMemberCountIs(t *testing.T) {
	for _, c := range []struct {
		is   string
		n    int
		want bool
	}{{"2", 2, true}, {"==2", 3, false}, {"<3", 2, true}, {">3", 3, false}, {">=3", 3, true}, {"<=1", 2, false}, {"x", 2, false}} {
		if got := memberCountIs(c.is, c.n); got != c.want {
			t.Errorf("memberCountIs(%q, %d) = %v", c.is, c.n, got)
		}
	}
}

// TestEvaluateThreadSubscriptions: MSC4306's postcontent rules. A thread event notifies a
// subscribed user with a sound whatever their room rule, an unsubscribed one not at all
// unless it mentions them; events outside threads are left to the other rules; a DM poll
// still notifies (MSC3930).
func TestEvaluateThreadSubscriptions(t *testing.T) {
	rules := Defaults(bob)
	for i := range rules.Global.PostContent {
		rules.Global.PostContent[i].Enabled = true // they start disabled: a client enables them
	}
	rules.Global.Room = []Rule{{RuleID: "!r:example.org", Enabled: true, Actions: []any{}}} // the room is muted
	msg := event(t, `{"type":"m.room.message","sender":"@a:x","content":{"body":"hi","msgtype":"m.text"}}`)
	mention := event(t, `{"type":"m.room.message","sender":"@a:x","content":{"body":"hi","m.mentions":{"user_ids":["`+bob+`"]}}}`)
	ec := EvalContext{UserID: bob, RoomID: "!r:example.org", MemberCount: 5}
	in, sub := ec, ec
	in.InThread = true
	sub.InThread, sub.ThreadSubscribed = true, true
	for _, c := range []struct {
		name   string
		ev     *Event
		ec     EvalContext
		notify bool
		sound  bool
	}{
		{"main timeline, muted room", msg, ec, false, false},
		{"unsubscribed thread", msg, in, false, false},
		{"unsubscribed thread, mention", mention, in, true, true},
		{"subscribed thread, muted room", msg, sub, true, true},
	} {
		notify, _, actions := Evaluate(&rules, c.ev, c.ec)
		if notify != c.notify || (len(actions) > 1) != c.sound {
			t.Errorf("%s: notify %v, actions %v; want notify %v, sound %v", c.name, notify, actions, c.notify, c.sound)
		}
	}
	poll := event(t, `{"type":"org.matrix.msc3381.poll.start","sender":"@a:x","content":{}}`)
	dm := EvalContext{UserID: bob, RoomID: "!dm:example.org", MemberCount: 2}
	if notify, _, actions := Evaluate(&rules, poll, dm); !notify || len(actions) != 2 {
		t.Errorf("a DM poll: notify %v, actions %v", notify, actions)
	}
}
