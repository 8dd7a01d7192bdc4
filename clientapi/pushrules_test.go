package clientapi_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const pushRulesPath = "/_matrix/client/v3/pushrules/"

// specDefaultOverride and specDefaultUnderride are the spec's "Predefined Rules" (v1.19) for
// @fuzzer:localhost, in the spec's order, then MSC3930's poll rules.
var specDefaultOverride = []string{
	`{"rule_id":".m.rule.master","default":true,"enabled":false,"conditions":[],"actions":[]}`,
	`{"rule_id":".m.rule.suppress_notices","default":true,"enabled":true,"conditions":[{"kind":"event_match","key":"content.msgtype","pattern":"m.notice"}],"actions":[]}`,
	`{"rule_id":".m.rule.invite_for_me","default":true,"enabled":true,"conditions":[{"kind":"event_match","key":"type","pattern":"m.room.member"},{"kind":"event_match","key":"content.membership","pattern":"invite"},{"kind":"event_match","key":"state_key","pattern":"@fuzzer:localhost"}],"actions":["notify",{"set_tweak":"sound","value":"default"}]}`,
	`{"rule_id":".m.rule.member_event","default":true,"enabled":true,"conditions":[{"kind":"event_match","key":"type","pattern":"m.room.member"}],"actions":[]}`,
	`{"rule_id":".m.rule.is_user_mention","default":true,"enabled":true,"conditions":[{"kind":"event_property_contains","key":"content.m\\.mentions.user_ids","value":"@fuzzer:localhost"}],"actions":["notify",{"set_tweak":"sound","value":"default"},{"set_tweak":"highlight"}]}`,
	`{"rule_id":".m.rule.is_room_mention","default":true,"enabled":true,"conditions":[{"kind":"event_property_is","key":"content.m\\.mentions.room","value":true},{"kind":"sender_notification_permission","key":"room"}],"actions":["notify",{"set_tweak":"highlight"}]}`,
	`{"rule_id":".m.rule.tombstone","default":true,"enabled":true,"conditions":[{"kind":"event_match","key":"type","pattern":"m.room.tombstone"},{"kind":"event_match","key":"state_key","pattern":""}],"actions":["notify",{"set_tweak":"highlight"}]}`,
	`{"rule_id":".m.rule.reaction","default":true,"enabled":true,"conditions":[{"kind":"event_match","key":"type","pattern":"m.reaction"}],"actions":[]}`,
	`{"rule_id":".m.rule.room.server_acl","default":true,"enabled":true,"conditions":[{"kind":"event_match","key":"type","pattern":"m.room.server_acl"},{"kind":"event_match","key":"state_key","pattern":""}],"actions":[]}`,
	`{"rule_id":".m.rule.suppress_edits","default":true,"enabled":true,"conditions":[{"kind":"event_property_is","key":"content.m\\.relates_to.rel_type","value":"m.replace"}],"actions":[]}`,
}

var specDefaultUnderride = []string{
	`{"rule_id":".m.rule.call","default":true,"enabled":true,"conditions":[{"kind":"event_match","key":"type","pattern":"m.call.invite"}],"actions":["notify",{"set_tweak":"sound","value":"ring"}]}`,
	`{"rule_id":".m.rule.encrypted_room_one_to_one","default":true,"enabled":true,"conditions":[{"kind":"room_member_count","is":"2"},{"kind":"event_match","key":"type","pattern":"m.room.encrypted"}],"actions":["notify",{"set_tweak":"sound","value":"default"}]}`,
	`{"rule_id":".m.rule.room_one_to_one","default":true,"enabled":true,"conditions":[{"kind":"room_member_count","is":"2"},{"kind":"event_match","key":"type","pattern":"m.room.message"}],"actions":["notify",{"set_tweak":"sound","value":"default"}]}`,
	`{"rule_id":".m.rule.message","default":true,"enabled":true,"conditions":[{"kind":"event_match","key":"type","pattern":"m.room.message"}],"actions":["notify"]}`,
	`{"rule_id":".m.rule.encrypted","default":true,"enabled":true,"conditions":[{"kind":"event_match","key":"type","pattern":"m.room.encrypted"}],"actions":["notify"]}`,
	// MSC3930's poll rules, stable names then the unstable ones.
	`{"rule_id":".m.rule.poll_start_one_to_one","default":true,"enabled":true,"conditions":[{"kind":"room_member_count","is":"2"},{"kind":"event_match","key":"type","pattern":"m.poll.start"}],"actions":["notify",{"set_tweak":"sound","value":"default"}]}`,
	`{"rule_id":".m.rule.poll_start","default":true,"enabled":true,"conditions":[{"kind":"event_match","key":"type","pattern":"m.poll.start"}],"actions":["notify"]}`,
	`{"rule_id":".m.rule.poll_end_one_to_one","default":true,"enabled":true,"conditions":[{"kind":"room_member_count","is":"2"},{"kind":"event_match","key":"type","pattern":"m.poll.end"}],"actions":["notify",{"set_tweak":"sound","value":"default"}]}`,
	`{"rule_id":".m.rule.poll_end","default":true,"enabled":true,"conditions":[{"kind":"event_match","key":"type","pattern":"m.poll.end"}],"actions":["notify"]}`,
	`{"rule_id":".org.matrix.msc3930.rule.poll_start_one_to_one","default":true,"enabled":true,"conditions":[{"kind":"room_member_count","is":"2"},{"kind":"event_match","key":"type","pattern":"org.matrix.msc3381.poll.start"}],"actions":["notify",{"set_tweak":"sound","value":"default"}]}`,
	`{"rule_id":".org.matrix.msc3930.rule.poll_start","default":true,"enabled":true,"conditions":[{"kind":"event_match","key":"type","pattern":"org.matrix.msc3381.poll.start"}],"actions":["notify"]}`,
	`{"rule_id":".org.matrix.msc3930.rule.poll_end_one_to_one","default":true,"enabled":true,"conditions":[{"kind":"room_member_count","is":"2"},{"kind":"event_match","key":"type","pattern":"org.matrix.msc3381.poll.end"}],"actions":["notify",{"set_tweak":"sound","value":"default"}]}`,
	`{"rule_id":".org.matrix.msc3930.rule.poll_end","default":true,"enabled":true,"conditions":[{"kind":"event_match","key":"type","pattern":"org.matrix.msc3381.poll.end"}],"actions":["notify"]}`,
}

// decodeAll decodes a JSON value written in the test.
func decodeAll(t *testing.T, js string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(js), &v); err != nil {
		t.Fatalf("bad test JSON %s: %v", js, err)
	}
	return v
}

// msc4306PostContent are MSC4306's thread subscription rules, under its unstable names.
var msc4306PostContent = []string{
	`{"rule_id":".io.element.msc4306.rule.unsubscribed_thread","default":true,"enabled":false,"conditions":[{"kind":"io.element.msc4306.thread_subscription","subscribed":false}],"actions":[]}`,
	`{"rule_id":".io.element.msc4306.rule.subscribed_thread","default":true,"enabled":false,"conditions":[{"kind":"io.element.msc4306.thread_subscription","subscribed":true}],"actions":["notify",{"set_tweak":"sound","value":"default"}]}`,
}

func specDefaultRuleset(t *testing.T) any {
	return decodeAll(t, `{"override":[`+strings.Join(specDefaultOverride, ",")+`],"content":[],"postcontent":[`+strings.Join(msc4306PostContent, ",")+`],"room":[],"sender":[],`+
		`"underride":[`+strings.Join(specDefaultUnderride, ",")+`]}`)
}

// ruleIDs returns the rule IDs of one kind in the response of GET /pushrules/global/.
func ruleIDs(ruleset map[string]any, kind string) []string {
	var ids []string
	for _, r := range ruleset[kind].([]any) {
		ids = append(ids, r.(map[string]any)["rule_id"].(string))
	}
	return ids
}

func TestPushRulesDefaults(t *testing.T) {
	s := newStack(t)
	want := specDefaultRuleset(t)
	for _, path := range []string{pushRulesPath, strings.TrimSuffix(pushRulesPath, "/")} {
		got := s.do(t, "GET", path, "")
		if d := cmp.Diff(map[string]any{"global": want}, got); d != "" {
			t.Errorf("GET %s (-want +got):\n%s", path, d)
		}
	}
	got := s.do(t, "GET", pushRulesPath+"global/", "")
	if d := cmp.Diff(want, any(got)); d != "" {
		t.Errorf("GET /pushrules/global/ (-want +got):\n%s", d)
	}
	master := s.do(t, "GET", pushRulesPath+"global/override/.m.rule.master", "")
	if d := cmp.Diff(decodeAll(t, specDefaultOverride[0]), any(master)); d != "" {
		t.Errorf("GET .m.rule.master (-want +got):\n%s", d)
	}
}

func TestPushRulesPutPosition(t *testing.T) {
	s := newStack(t)
	const beer = `{"conditions":[{"kind":"event_match","key":"content.body","pattern":"beer"}],"actions":["notify","dont_notify"]}`
	s.do(t, "PUT", pushRulesPath+"global/override/first", beer)
	s.do(t, "PUT", pushRulesPath+"global/override/second?before=first", `{"conditions":[],"actions":[]}`)
	s.do(t, "PUT", pushRulesPath+"global/override/third?after=first", `{"actions":["notify"]}`)
	s.do(t, "PUT", pushRulesPath+"global/override/fourth?before=second&after=third", `{"actions":[]}`)

	global := s.do(t, "GET", pushRulesPath+"global/", "")
	wantIDs := []string{".m.rule.master", "fourth", "second", "first", "third", ".m.rule.suppress_notices"}
	if d := cmp.Diff(wantIDs, ruleIDs(global, "override")[:len(wantIDs)]); d != "" {
		t.Errorf("override order (-want +got):\n%s", d)
	}
	if n := len(global["override"].([]any)); n != len(specDefaultOverride)+4 {
		t.Errorf("%d override rules, want %d", n, len(specDefaultOverride)+4)
	}

	// The historical dont_notify action is kept as sent (evaluation ignores it); a rule
	// without conditions gets [].
	cases := map[string]string{
		"override/first": `{"rule_id":"first","default":false,"enabled":true,"conditions":[{"kind":"event_match","key":"content.body","pattern":"beer"}],"actions":["notify","dont_notify"]}`,
		"override/third": `{"rule_id":"third","default":false,"enabled":true,"conditions":[],"actions":["notify"]}`,
	}
	for rule, want := range cases {
		got := s.do(t, "GET", pushRulesPath+"global/"+rule, "")
		if d := cmp.Diff(decodeAll(t, want), any(got)); d != "" {
			t.Errorf("GET %s (-want +got):\n%s", rule, d)
		}
	}

	// An update keeps the rule's place and its enabled state.
	s.do(t, "PUT", pushRulesPath+"global/override/first/enabled", `{"enabled":false}`)
	s.do(t, "PUT", pushRulesPath+"global/override/first", `{"conditions":[],"actions":["notify",{"set_tweak":"highlight"}]}`)
	got := s.do(t, "GET", pushRulesPath+"global/override/first", "")
	want := `{"rule_id":"first","default":false,"enabled":false,"conditions":[],"actions":["notify",{"set_tweak":"highlight"}]}`
	if d := cmp.Diff(decodeAll(t, want), any(got)); d != "" {
		t.Errorf("updated rule (-want +got):\n%s", d)
	}
	if d := cmp.Diff(wantIDs, ruleIDs(s.do(t, "GET", pushRulesPath+"global/", ""), "override")[:len(wantIDs)]); d != "" {
		t.Errorf("override order after update (-want +got):\n%s", d)
	}

	// The whole rule set is the user's m.push_rules account data, which /sync delivers.
	data := s.do(t, "GET", "/_matrix/client/v3/user/@fuzzer:localhost/account_data/m.push_rules", "")
	if d := cmp.Diff(wantIDs, ruleIDs(data["global"].(map[string]any), "override")[:len(wantIDs)]); d != "" {
		t.Errorf("m.push_rules account data (-want +got):\n%s", d)
	}

	s.do(t, "DELETE", pushRulesPath+"global/override/third", "")
	if rec := s.request("GET", pushRulesPath+"global/override/third", ""); rec.Code != 404 {
		t.Errorf("GET deleted rule: %d %s", rec.Code, rec.Body)
	}
}

func TestPushRulesOtherKinds(t *testing.T) {
	s := newStack(t)
	s.do(t, "PUT", pushRulesPath+"global/content/cake", `{"pattern":"cake*lie","actions":["notify"],"conditions":[{"kind":"x"}]}`)
	s.do(t, "PUT", pushRulesPath+"global/room/%21abc%3Alocalhost", `{"actions":[]}`)
	s.do(t, "PUT", pushRulesPath+"global/sender/@spam:localhost", `{"actions":[],"pattern":"x"}`)
	cases := map[string]string{
		"content/cake":               `{"rule_id":"cake","default":false,"enabled":true,"pattern":"cake*lie","actions":["notify"]}`,
		"room/%21abc%3Alocalhost":    `{"rule_id":"!abc:localhost","default":false,"enabled":true,"actions":[]}`,
		"sender/%40spam%3Alocalhost": `{"rule_id":"@spam:localhost","default":false,"enabled":true,"actions":[]}`,
	}
	for rule, want := range cases {
		got := s.do(t, "GET", pushRulesPath+"global/"+rule, "")
		if d := cmp.Diff(decodeAll(t, want), any(got)); d != "" {
			t.Errorf("GET %s (-want +got):\n%s", rule, d)
		}
	}
}

func TestPushRulesDefaultEnabledAndActions(t *testing.T) {
	s := newStack(t)
	const message = pushRulesPath + "global/underride/.m.rule.message"
	s.do(t, "PUT", message+"/enabled", `{"enabled":false}`)
	s.do(t, "PUT", message+"/actions", `{"actions":["notify",{"set_tweak":"sound","value":"bing"}]}`)

	if got := s.do(t, "GET", message+"/enabled", ""); got["enabled"] != false {
		t.Errorf("GET enabled = %v, want false", got)
	}
	got := s.do(t, "GET", message+"/actions", "")
	if d := cmp.Diff(decodeAll(t, `{"actions":["notify",{"set_tweak":"sound","value":"bing"}]}`), any(got)); d != "" {
		t.Errorf("GET actions (-want +got):\n%s", d)
	}

	// The rule stays a server default in its place; nothing else changes but the poll rules
	// that mirror it (MSC3930: .m.rule.poll_start, .m.rule.poll_end and their unstable twins).
	want := specDefaultRuleset(t).(map[string]any)
	for _, i := range []int{3, 6, 8, 10, 12} {
		msg := want["underride"].([]any)[i].(map[string]any)
		msg["enabled"] = false
		msg["actions"] = decodeAll(t, `["notify",{"set_tweak":"sound","value":"bing"}]`)
	}
	if d := cmp.Diff(map[string]any{"global": any(want)}, s.do(t, "GET", pushRulesPath, "")); d != "" {
		t.Errorf("GET /pushrules/ (-want +got):\n%s", d)
	}

	s.do(t, "PUT", message+"/enabled", `{"enabled":true}`)
	if got := s.do(t, "GET", message+"/enabled", ""); got["enabled"] != true {
		t.Errorf("GET enabled after re-enabling = %v, want true", got)
	}
}

func TestPushRulesErrors(t *testing.T) {
	s := newStack(t)
	s.do(t, "PUT", pushRulesPath+"global/override/mine", `{"actions":[]}`)
	cases := []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"DELETE", "global/underride/.m.rule.message", "", 400, "M_INVALID_PARAM"},
		{"DELETE", "global/override/.m.rule.master", "", 400, "M_INVALID_PARAM"},
		{"DELETE", "global/override/nope", "", 404, "M_NOT_FOUND"},
		{"GET", "global/nonsense/mine", "", 400, "M_INVALID_PARAM"},
		{"PUT", "global/nonsense/mine", `{"actions":[]}`, 400, "M_INVALID_PARAM"},
		{"GET", "global/override/nope", "", 404, "M_NOT_FOUND"},
		{"GET", "global/content/mine", "", 404, "M_NOT_FOUND"},
		{"GET", "global/override/nope/enabled", "", 404, "M_NOT_FOUND"},
		{"PUT", "global/override/nope/enabled", `{"enabled":true}`, 404, "M_NOT_FOUND"},
		{"GET", "global/override/nope/actions", "", 404, "M_NOT_FOUND"},
		{"PUT", "global/override/nope/actions", `{"actions":[]}`, 404, "M_NOT_FOUND"},
		{"GET", "device/override/mine", "", 400, "M_INVALID_PARAM"},
		{"GET", "device/", "", 400, "M_INVALID_PARAM"},
		{"PUT", "global/override/.m.rule.mine", `{"actions":[]}`, 400, "M_INVALID_PARAM"},
		{"PUT", "global/override/.m.rule.message", `{"actions":[]}`, 400, "M_INVALID_PARAM"},
		{"PUT", "global/override/a%2Fb", `{"actions":[]}`, 400, "M_INVALID_PARAM"},
		{"PUT", "global/override/x?before=.m.rule.master", `{"actions":[]}`, 400, "M_INVALID_PARAM"},
		{"PUT", "global/override/x?after=missing", `{"actions":[]}`, 400, "M_UNKNOWN"},
		{"PUT", "global/override/x", `{"conditions":[]}`, 400, "M_MISSING_PARAM"},
		{"PUT", "global/override/x", `{"actions":"notify"}`, 400, "M_BAD_JSON"},
		{"PUT", "global/override/x", `{"actions":[1]}`, 400, "M_BAD_JSON"},
		{"PUT", "global/override/x", `{"actions":[],"conditions":[{"key":"type"}]}`, 400, "M_BAD_JSON"},
		{"PUT", "global/content/x", `{"actions":[]}`, 400, "M_MISSING_PARAM"},
		{"PUT", "global/override/x", `not json`, 400, "M_NOT_JSON"},
		{"PUT", "global/override/mine/enabled", `{}`, 400, "M_MISSING_PARAM"},
		{"PUT", "global/override/mine/actions", `{}`, 400, "M_MISSING_PARAM"},
	}
	for _, c := range cases {
		rec := s.request(c.method, pushRulesPath+c.path, c.body)
		var e struct {
			ErrCode string `json:"errcode"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &e)
		if rec.Code != c.status || e.ErrCode != c.code {
			t.Errorf("%s %s: got %d %s, want %d %s", c.method, c.path, rec.Code, rec.Body, c.status, c.code)
		}
	}
	// None of the failures changed anything.
	ids := ruleIDs(s.do(t, "GET", pushRulesPath+"global/", ""), "override")
	if len(ids) != len(specDefaultOverride)+1 || ids[1] != "mine" {
		t.Errorf("override rules after failed requests: %v", ids)
	}

	anon := *s
	anon.token = ""
	if rec := anon.request("GET", pushRulesPath, ""); rec.Code != 401 {
		t.Errorf("GET /pushrules/ without a token: %d %s", rec.Code, rec.Body)
	}
}
