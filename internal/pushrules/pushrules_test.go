package pushrules

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestCopyRoomRules: the rules of a room that is upgraded are copied for its replacement,
// once, before their originals; rules about other rooms and default rules are not.
func TestCopyRoomRules(t *testing.T) {
	const stored = `{"global":{
		"room":[{"rule_id":"!old:x","enabled":false,"actions":["dont_notify"]},{"rule_id":"!other:x","enabled":true,"actions":[]}],
		"override":[{"rule_id":"kw","enabled":true,"actions":["notify"],"conditions":[
			{"kind":"event_match","key":"room_id","pattern":"!old:x"},{"kind":"event_match","key":"content.body","pattern":"x"}]}],
		"underride":[{"rule_id":"u-!old:x","enabled":true,"actions":[],"conditions":[{"kind":"event_match","key":"room_id","pattern":"!old:x"}]},
			{"rule_id":"elsewhere","enabled":true,"actions":[],"conditions":[{"kind":"event_match","key":"room_id","pattern":"!other:x"}]}]}}`
	rules, err := Parse(bob, stored)
	if err != nil {
		t.Fatal(err)
	}
	if !CopyRoomRules(&rules, "!old:x", "!new:x") {
		t.Fatal("CopyRoomRules reported no change")
	}
	ids := func(rs []Rule) []string {
		var out []string
		for _, r := range rs {
			if !r.Default {
				out = append(out, r.RuleID)
			}
		}
		return out
	}
	if d := cmp.Diff([]string{"!new:x", "!old:x", "!other:x"}, ids(rules.Global.Room)); d != "" {
		t.Errorf("room rules (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"kw-!new:x", "kw"}, ids(rules.Global.Override)); d != "" {
		t.Errorf("override rules (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"u-!new:x", "u-!old:x", "elsewhere"}, ids(rules.Global.Underride)); d != "" {
		t.Errorf("underride rules (-want +got):\n%s", d)
	}
	room := rules.Global.Room[0]
	if room.Enabled || len(room.Actions) != 1 || room.Actions[0] != "dont_notify" {
		t.Errorf("copied room rule %+v keeps neither enabled nor actions", room)
	}
	kw, _ := json.Marshal(rules.Global.Override[1].Conditions)
	if want := `[{"kind":"event_match","key":"room_id","pattern":"!new:x"},{"kind":"event_match","key":"content.body","pattern":"x"}]`; string(kw) != want {
		t.Errorf("copied conditions %s, want %s", kw, want)
	}
	if orig := *rules.Global.Override[2].Conditions[0].Pattern; orig != "!old:x" {
		t.Errorf("the original's condition became %q", orig)
	}
	if CopyRoomRules(&rules, "!old:x", "!new:x") {
		t.Error("a second copy reported a change")
	}
}
