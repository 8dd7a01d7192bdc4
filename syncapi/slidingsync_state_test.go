package syncapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// TestRequiredStateWildcardLoadsOnlyMatches: required_state with a type and a wildcard state
// key (Element X's ["m.space.child", "*"]) loads the events of that type only, not the whole
// state of a room with many members; and a change of config loads only what it selects.
func TestRequiredStateWildcardLoadsOnlyMatches(t *testing.T) {
	ctx := context.Background()
	db, rooms := slidingTestDB(t, 1)
	s := &Server{db: db, rooms: roomserver.New(roomserver.Config{ServerName: "x"}, db, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))}
	keys := []storage.StateKey{{Type: spec.MRoomCreate}, {Type: "m.room.name"}, {Type: "m.space.child", StateKey: "!a:x"},
		{Type: "m.space.child", StateKey: "!b:x"}, {Type: "m.call.member", StateKey: "@alice:x"}}
	for i := range 200 {
		keys = append(keys, storage.StateKey{Type: spec.MRoomMember, StateKey: fmt.Sprintf("@u%d:x", i)})
	}
	state := map[int64]int64{}
	err := db.WithTx(ctx, func(tx *storage.Tx) error {
		for i, k := range keys {
			knid, err := tx.StateKeyNID(ctx, k)
			if err != nil {
				return err
			}
			js := fmt.Sprintf(`{"type":%q,"state_key":%q,"content":{}}`, k.Type, k.StateKey)
			nid, err := tx.InsertEvent(ctx, &storage.Event{EventID: fmt.Sprintf("$state%d", i), RoomNID: rooms[0],
				Type: k.Type, Sender: "@alice:x", Depth: int64(i + 1), JSON: []byte(js)})
			if err != nil {
				return err
			}
			state[knid] = nid
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var rs requiredState
	if err := json.Unmarshal([]byte(`[["m.space.child","*"],["m.call.member","*"],["m.room.member","$ME"]]`), &rs); err != nil {
		t.Fatal(err)
	}
	m := rs.matcher("@alice:x")
	want := func(k storage.StateKey) bool { return m.matches(k.Type, k.StateKey) }
	evs, err := s.stateEventsMatching(ctx, state, nil, want)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || s.sliding.stateLoads != 3 {
		t.Fatalf("loaded %d state events (%d returned) of %d, want the 3 matching", s.sliding.stateLoads, len(evs), len(state))
	}
	for _, ev := range evs {
		if typ, key := stateKeyOf(ev); !rs.matches(typ, key, "@alice:x") {
			t.Errorf("loaded %s %q, which the config does not ask for", typ, key)
		}
	}
	// Only what changed against before, and only what matches.
	before := map[int64]int64{}
	for k, v := range state {
		before[k] = v
	}
	for k := range state {
		if key, _ := s.rooms.StateKey(ctx, k); key.Type == spec.MRoomMember || key.StateKey == "!a:x" {
			before[k] = -1 // changed since
		}
	}
	s.sliding.stateLoads = 0
	if evs, err = s.stateEventsMatching(ctx, state, before, want); err != nil || len(evs) != 1 || s.sliding.stateLoads != 1 {
		t.Errorf("incremental: %d loaded, %d returned, %v; want the changed space child only", s.sliding.stateLoads, len(evs), err)
	}
}

// TestStateMatcherAgreesWithSelectors: the indexed matcher answers as the selectors do.
func TestStateMatcherAgreesWithSelectors(t *testing.T) {
	var rs requiredState
	body := `{"include":[{"type":"m.room.name","state_key":""},{"type":"m.space.child"},{"state_key":"$ME"},{"type":"m.room.member","state_key":"@bob:x"}],
		"exclude":[{"type":"m.room.member","state_key":"@bob:x"},{"type":"m.space.child","state_key":"!no:x"}]}`
	if err := json.Unmarshal([]byte(body), &rs); err != nil {
		t.Fatal(err)
	}
	m := rs.matcher("@alice:x")
	for _, typ := range []string{"m.room.name", "m.space.child", "m.room.member", "m.room.topic"} {
		for _, key := range []string{"", "@alice:x", "@bob:x", "!no:x", "!yes:x", "$ME"} {
			if got, want := m.matches(typ, key), rs.matches(typ, key, "@alice:x"); got != want {
				t.Errorf("(%s, %q): matcher %v, selectors %v", typ, key, got, want)
			}
		}
	}
	var all requiredState
	if err := json.Unmarshal([]byte(`{"include":[{}],"exclude":[{"type":"m.room.create"}]}`), &all); err != nil {
		t.Fatal(err)
	}
	if m := all.matcher("@alice:x"); !m.matches("m.room.topic", "") || m.matches("m.room.create", "") {
		t.Error("include everything but the create event")
	}
}

// TestRequiredStateCap: a list or subscription with more than maxRequiredState selectors is
// refused with M_INVALID_PARAM.
func TestRequiredStateCap(t *testing.T) {
	pairs := make([]string, maxRequiredState+1)
	for i := range pairs {
		pairs[i] = fmt.Sprintf(`["t%d","*"]`, i)
	}
	many := "[" + strings.Join(pairs, ",") + "]"
	for _, body := range []string{
		`{"lists":{"a":{"ranges":[[0,1]],"timeline_limit":1,"required_state":` + many + `}}}`,
		`{"room_subscriptions":{"!r:x":{"timeline_limit":1,"required_state":` + many + `}}}`,
	} {
		_, err := parseSlidingRequest(httptest.NewRequest("POST", "/sync", strings.NewReader(body)))
		var me spec.MatrixError
		if !errors.As(err, &me) || me.ErrCode != spec.ErrorInvalidParam {
			t.Errorf("%d selectors: error %v, want M_INVALID_PARAM", maxRequiredState+1, err)
		}
	}
	ok := `{"lists":{"a":{"ranges":[[0,1]],"timeline_limit":1,"required_state":[` + strings.Join(pairs[:maxRequiredState], ",") + `]}}}`
	if _, err := parseSlidingRequest(httptest.NewRequest("POST", "/sync", strings.NewReader(ok))); err != nil {
		t.Errorf("%d selectors refused: %v", maxRequiredState, err)
	}
}

// TestRequiredStateMergeKeepsExclusions: the union of a config that excludes and one that
// does not returns what either would; merging with a config that selects nothing changes
// nothing.
func TestRequiredStateMergeKeepsExclusions(t *testing.T) {
	var allButCreate, names, none requiredState
	for raw, rs := range map[string]*requiredState{
		`{"include":[{}],"exclude":[{"type":"m.room.create"}]}`: &allButCreate,
		`[["m.room.name",""],["m.room.create",""]]`:             &names,
		`[]`: &none,
	} {
		if err := json.Unmarshal([]byte(raw), rs); err != nil {
			t.Fatal(err)
		}
	}
	if got := none.merge(allButCreate); got.matches("m.room.create", "", "@a:x") || !got.matches("m.room.topic", "", "@a:x") {
		t.Error("merging with an empty config lost the exclusion")
	}
	u := allButCreate.merge(names)
	m := u.matcher("@a:x")
	for _, c := range []struct {
		typ  string
		want bool
	}{{"m.room.create", true}, {"m.room.topic", true}, {"m.room.name", true}} {
		if u.matches(c.typ, "", "@a:x") != c.want || m.matches(c.typ, "") != c.want {
			t.Errorf("union matches %s = %v, want %v", c.typ, u.matches(c.typ, "", "@a:x"), c.want)
		}
	}
	if u.signature() == allButCreate.signature() {
		t.Error("the union has the signature of one of its parts")
	}
	if keys, ok := names.merge(names).concreteKeys("@a:x"); !ok || len(keys) != 2 {
		t.Errorf("concrete keys of a union of the same names: %v %v", keys, ok)
	}
}
