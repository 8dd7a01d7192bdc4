package roomserver

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/roomserver/ownedstate"
)

// ownedStateResCase is one resolution of two state sets with events on owned state keys
// (MSC3757). The events are m.room.topic state events, which every member may send at pl1
// (topic needs 0), so that only rule 8 and membership decide them. want is the resolved
// state's difference from the base state in the MSC3757 versions, wantBase in room versions
// 10 and 11, where only the user ID itself is owned and only by that user.
type ownedStateResCase struct {
	name           string
	events         func(d *testDAG)
	s1, s2         []string
	want, wantBase map[string]string
}

// owned returns an m.room.topic event on an owned key, citing the power levels pl and the
// sender's membership m.
func owned(name, sender, key, pl, m string, ts int64) evSpec {
	return evSpec{name: name, sender: sender, typ: "m.room.topic", key: key, content: map[string]any{"topic": name}, auth: []string{"create", pl, m}, ts: ts}
}

func ownedStateResCases() []ownedStateResCase {
	carolDev := user("carol") + "_DEVICE_m.call"
	kCarolDev, kCarol := "m.room.topic|"+carolDev, "m.room.topic|"+user("carol")
	return []ownedStateResCase{{
		// Step 3/4: both of the owner's updates pass; the mainline positions are equal (pl1),
		// so the later timestamp is applied last. In 10 and 11 the suffixed key is nobody's.
		name: "owner's concurrent updates: later timestamp wins",
		events: func(d *testDAG) {
			d.add(owned("oa", "carol", carolDev, "pl1", "mc", 80_000))
			d.add(owned("ob", "carol", carolDev, "pl1", "mc", 90_000))
		},
		s1: []string{"oa"}, s2: []string{"ob"},
		want:     map[string]string{kCarolDev: "ob"},
		wantBase: map[string]string{},
	}, {
		// Rule 8.1.3: dan (75) outranks carol (0) and may overwrite her key, so his later
		// event wins; in 10 and 11 only carol may write "@carol:test".
		name: "greater power level overwrites the owner",
		events: func(d *testDAG) {
			d.add(owned("oc", "carol", user("carol"), "pl1", "mc", 80_000))
			d.add(owned("od", "dan", user("carol"), "pl1", "md", 90_000))
		},
		s1: []string{"oc"}, s2: []string{"od"},
		want:     map[string]string{kCarol: "od"},
		wantBase: map[string]string{kCarol: "oc"},
	}, {
		// Mainline ordering: the owner's later update is applied after the moderator's.
		name: "owner's later update beats the moderator's",
		events: func(d *testDAG) {
			d.add(owned("od", "dan", user("carol"), "pl1", "md", 80_000))
			d.add(owned("oc", "carol", user("carol"), "pl1", "mc", 90_000))
		},
		s1: []string{"od"}, s2: []string{"oc"},
		want:     map[string]string{kCarol: "oc"},
		wantBase: map[string]string{kCarol: "oc"},
	}, {
		// Rule 8.1.3 against the partially resolved state: bob (50 at pl1) overwrote carol's
		// key while alice concurrently took his power away (pla). Step 2 applies pla, so when
		// ob is checked in step 4 bob's level (0) is not greater than carol's and ob is
		// dropped although it is the later event; carol's own update stays.
		name: "overwrite by a user whose power was removed concurrently",
		events: func(d *testDAG) {
			d.add(owned("oc", "carol", carolDev, "pl1", "mc", 80_000))
			d.add(evSpec{name: "pla", sender: "alice", typ: spec.MRoomPowerLevels, content: d.pl(map[string]int{"dan": 75}, nil), auth: []string{"create", "pl1", "ma"}, ts: 85_000})
			d.add(owned("ob", "bob", carolDev, "pl1", "mb", 90_000))
		},
		s1: []string{"oc", "pla"}, s2: []string{"ob"},
		want:     map[string]string{kPL: "pla", kCarolDev: "oc"},
		wantBase: map[string]string{kPL: "pla"},
	}, {
		// The same with bob keeping his power: ob is later and passes, so it wins.
		name: "overwrite by a user who keeps a greater power level",
		events: func(d *testDAG) {
			d.add(owned("oc", "carol", carolDev, "pl1", "mc", 80_000))
			d.add(owned("ob", "bob", carolDev, "pl1", "mb", 90_000))
		},
		s1: []string{"oc"}, s2: []string{"ob"},
		want:     map[string]string{kCarolDev: "ob"},
		wantBase: map[string]string{},
	}, {
		// A lower power level never overwrites: bob (50) on alice's (100) key.
		name: "lower power level does not overwrite",
		events: func(d *testDAG) {
			d.add(owned("oa", "alice", user("alice")+"_D", "pl1", "ma", 80_000))
			d.add(owned("ob", "bob", user("alice")+"_D", "pl1", "mb", 90_000))
		},
		s1: []string{"oa"}, s2: []string{"ob"},
		want:     map[string]string{"m.room.topic|" + user("alice") + "_D": "oa"},
		wantBase: map[string]string{},
	}, {
		// The other rules still run in order with the other conflicted events: carol leaves
		// (lc, step 4 as well) before her update, which then fails "sender is joined".
		name: "owner's update after the owner left is dropped",
		events: func(d *testDAG) {
			d.add(evSpec{name: "lc", sender: "carol", typ: spec.MRoomMember, key: user("carol"), content: map[string]any{"membership": "leave"}, auth: []string{"create", "pl1", "mc"}, ts: 80_000})
			d.add(owned("oc", "carol", carolDev, "pl1", "mc", 90_000))
		},
		s1: []string{"lc"}, s2: []string{"oc"},
		want:     map[string]string{kMember("carol"): "lc"},
		wantBase: map[string]string{kMember("carol"): "lc"},
	}, {
		// And the reverse order: the update comes first and is kept.
		name: "owner's update before the owner left is kept",
		events: func(d *testDAG) {
			d.add(owned("oc", "carol", carolDev, "pl1", "mc", 80_000))
			d.add(evSpec{name: "lc", sender: "carol", typ: spec.MRoomMember, key: user("carol"), content: map[string]any{"membership": "leave"}, auth: []string{"create", "pl1", "mc"}, ts: 90_000})
		},
		s1: []string{"lc"}, s2: []string{"oc"},
		want:     map[string]string{kMember("carol"): "lc", kCarolDev: "oc"},
		wantBase: map[string]string{kMember("carol"): "lc"},
	}, {
		// "_@" keys are nobody's in every version (MatrixRTC's form outside MSC3757 rooms):
		// the later of two users' events wins.
		name: "underscore-prefixed keys are not owned",
		events: func(d *testDAG) {
			d.add(owned("oc", "carol", "_"+carolDev, "pl1", "mc", 80_000))
			d.add(owned("ob", "bob", "_"+carolDev, "pl1", "mb", 90_000))
		},
		s1: []string{"oc"}, s2: []string{"ob"},
		want:     map[string]string{"m.room.topic|_" + carolDev: "ob"},
		wantBase: map[string]string{"m.room.topic|_" + carolDev: "ob"},
	}}
}

// TestStateResOwnedState resolves the owned-key cases in the MSC3757 versions and in their base
// versions, with the state sets in both orders.
func TestStateResOwnedState(t *testing.T) {
	for _, ver := range []gomatrixserverlib.RoomVersion{ownedstate.V10, ownedstate.V11, gomatrixserverlib.RoomVersionV10, gomatrixserverlib.RoomVersionV11} {
		for _, tc := range ownedStateResCases() {
			t.Run(string(ver)+"/"+tc.name, func(t *testing.T) {
				d := newTestDAG(t, ver)
				tc.events(d)
				want := map[string]string{}
				for k, v := range baseWant {
					want[k] = v
				}
				changes := tc.want
				if !ownedstate.Enabled(ver) {
					changes = tc.wantBase
				}
				for k, v := range changes {
					want[k] = v
				}
				sets := [][]gomatrixserverlib.PDU{d.state(tc.s1...), d.state(tc.s2...)}
				for _, order := range []string{"s1,s2", "s2,s1"} {
					if order == "s2,s1" {
						sets[0], sets[1] = sets[1], sets[0]
					}
					got, err := resolveState(d.ver, sets, d.authChains(sets), nil)
					if err != nil {
						t.Fatal(err)
					}
					if diff := cmp.Diff(want, d.named(got)); diff != "" {
						t.Errorf("%s: resolved state (-want +got):\n%s", order, diff)
					}
				}
			})
		}
	}
}
