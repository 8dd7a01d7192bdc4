package syncapi

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
)

func TestRequiredStateForms(t *testing.T) {
	const me = "@me:x"
	for _, tc := range []struct {
		name, js string
		lazy     bool
		match    map[[2]string]bool
	}{
		{"pairs", `[["m.room.name",""],["m.room.member","$LAZY"],["m.room.member","$ME"]]`, true,
			map[[2]string]bool{{"m.room.name", ""}: true, {"m.room.member", me}: true, {"m.room.member", "@you:x"}: false, {"m.room.topic", ""}: false}},
		{"wildcards", `[["*","*"]]`, false,
			map[[2]string]bool{{"m.room.name", ""}: true, {"m.room.member", "@you:x"}: true}},
		{"type wildcard", `[["m.room.member","*"]]`, false,
			map[[2]string]bool{{"m.room.member", "@you:x"}: true, {"m.room.name", ""}: false}},
		{"object", `{"include":[{}],"exclude":[{"type":"m.room.create","state_key":""}],"lazy_members":true}`, true,
			map[[2]string]bool{{"m.room.name", ""}: true, {"m.room.create", ""}: false}},
		{"object by state key", `{"include":[{"state_key":"$ME"}]}`, false,
			map[[2]string]bool{{"m.room.member", me}: true, {"m.custom", me}: true, {"m.room.name", ""}: false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rs requiredState
			if err := json.Unmarshal([]byte(tc.js), &rs); err != nil {
				t.Fatal(err)
			}
			if rs.LazyMembers != tc.lazy {
				t.Errorf("lazy = %v, want %v", rs.LazyMembers, tc.lazy)
			}
			for k, want := range tc.match {
				if got := rs.matches(k[0], k[1], me); got != want {
					t.Errorf("matches(%q, %q) = %v, want %v", k[0], k[1], got, want)
				}
			}
		})
	}
	var rs requiredState
	for _, bad := range []string{`[["only-type"]]`, `"x"`, `[1]`} {
		if err := json.Unmarshal([]byte(bad), &rs); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestRequiredStateConcreteKeysAndMerge(t *testing.T) {
	var a, b requiredState
	_ = json.Unmarshal([]byte(`[["m.room.name",""],["m.room.member","$ME"]]`), &a)
	keys, ok := a.concreteKeys("@me:x")
	if !ok || len(keys) != 2 || keys[1] != (stateSelector{Type: "m.room.member", StateKey: "@me:x"}) {
		t.Errorf("concreteKeys = %v, %v", keys, ok)
	}
	_ = json.Unmarshal([]byte(`[["*","*"],["m.room.member","$LAZY"]]`), &b)
	if _, ok := b.concreteKeys("@me:x"); ok {
		t.Error("a wildcard config has concrete keys")
	}
	m := a.merge(b)
	if !m.LazyMembers || !m.matches("m.room.topic", "", "@me:x") {
		t.Errorf("merge = %+v", m)
	}
	if a.signature() == m.signature() {
		t.Error("different configs have the same signature")
	}
}

func TestInRanges(t *testing.T) {
	ranges := [][2]int64{{0, 1}, {5, 5}}
	for i, want := range []bool{true, true, false, false, false, true, false} {
		if got := inRanges(ranges, i); got != want {
			t.Errorf("inRanges(%d) = %v", i, got)
		}
	}
}

func TestSlidingConnectionPositions(t *testing.T) {
	var ss slidingSync
	key := connKey{"@a:x", "DEV", ""}
	if _, err := ss.begin(key, "17"); !isUnknownPos(err) {
		t.Fatalf("unknown connection: %v", err)
	}
	base, err := ss.begin(key, "")
	if err != nil || base.pos != 0 {
		t.Fatal(base, err)
	}
	p1 := ss.commit(key, base.clone())
	p2 := ss.commit(key, base.clone()) // a retried request with no pos, then its answer
	for _, p := range []string{p1, p2} {
		if st, err := ss.begin(key, p); err != nil || st == nil {
			t.Errorf("pos %s: %v", p, err)
		}
	}
	// Seeing p2 forgets p1.
	if _, err := ss.begin(key, p1); !isUnknownPos(err) {
		t.Errorf("pos older than the acknowledged one still works: %v", err)
	}
	if _, err := ss.begin(connKey{"@a:x", "DEV", "other"}, p2); !isUnknownPos(err) {
		t.Errorf("pos of another conn_id accepted: %v", err)
	}
	if _, err := ss.begin(key, "not-a-number"); !isUnknownPos(err) {
		t.Errorf("malformed pos: %v", err)
	}
}

// isUnknownPos reports an M_UNKNOWN_POS, or begin's errNotInMemory (the handler then looks in
// the database, which these tests have not).
func isUnknownPos(err error) bool {
	if errors.Is(err, errNotInMemory) {
		return true
	}
	var he *httputil.Error
	return errors.As(err, &he) && he.Code == "M_UNKNOWN_POS" && he.Status == 400
}

func TestParseSlidingRequest(t *testing.T) {
	for _, tc := range []struct {
		query, body string
		code        spec.MatrixErrorCode
	}{
		{"", `{not json`, spec.ErrorNotJSON},
		{"", `[]`, spec.ErrorBadJSON},
		{"", `{"lists":{"a":{"ranges":[[3,1]],"timeline_limit":1}}}`, spec.ErrorInvalidParam},
		{"", `{"lists":{"a":{"ranges":[[0,1]],"timeline_limit":-1}}}`, spec.ErrorInvalidParam},
		{"", `{"lists":{"a":{"required_state":[["x"]]}}}`, spec.ErrorBadJSON},
		{"?timeout=abc", `{}`, spec.ErrorInvalidParam},
		{"?timeout=-1", `{}`, spec.ErrorInvalidParam},
	} {
		r := httptest.NewRequest("POST", "/sync"+tc.query, strings.NewReader(tc.body))
		_, err := parseSlidingRequest(r)
		var me spec.MatrixError
		if !errors.As(err, &me) || me.ErrCode != tc.code {
			t.Errorf("%s %s: error %v, want %s", tc.query, tc.body, err, tc.code)
		}
	}
	r := httptest.NewRequest("POST", "/sync?pos=5&timeout=100", strings.NewReader(`{"conn_id":"room-list","lists":{"a":{"range":[0,9],"timeline_limit":1}}}`))
	req, err := parseSlidingRequest(r)
	if err != nil || req.Pos != "5" || *req.Timeout != 100 || req.ConnID != "room-list" || len(req.Lists["a"].Ranges) != 1 {
		t.Errorf("parsed %+v, %v", req, err)
	}
}

// TestSlidingConnEviction: one user's connections are capped, and the least recently used
// go first, the requesting user's own before anyone else's.
func TestSlidingConnEviction(t *testing.T) {
	var ss slidingSync
	bob := connKey{userID: "@bob:x", deviceID: "B", connID: "main"}
	if _, err := ss.begin(bob, ""); err != nil {
		t.Fatal(err)
	}
	bobPos := ss.commit(bob, &connState{rooms: map[string]sentRoom{}})
	keep := connKey{userID: "@alice:x", deviceID: "D0", connID: "keep"}
	ss.begin(keep, "")
	keepPos := ss.commit(keep, &connState{rooms: map[string]sentRoom{}})
	for i := range 120 {
		k := connKey{userID: "@alice:x", deviceID: "D" + strconv.Itoa(i%6), connID: strconv.Itoa(i)}
		ss.begin(k, "")
		ss.commit(k, &connState{rooms: map[string]sentRoom{}})
		if _, err := ss.begin(keep, keepPos); err != nil {
			t.Fatalf("alice's connection in use was evicted after %d new ones", i)
		}
		keepPos = ss.commit(keep, &connState{rooms: map[string]sentRoom{}})
	}
	alice := 0
	for k := range ss.conns {
		if k.userID == "@alice:x" {
			alice++
		}
	}
	if alice != maxConnsPerUser {
		t.Errorf("alice has %d connections, want %d", alice, maxConnsPerUser)
	}
	if _, err := ss.begin(bob, bobPos); err != nil {
		t.Error("alice's connections evicted bob's")
	}
	// The server-wide cap: alice's own go first while she has any.
	ss.limit = 10
	for i := range 20 {
		k := connKey{userID: "@alice:x", deviceID: "E", connID: strconv.Itoa(i)}
		ss.begin(k, "")
	}
	if len(ss.conns) > 10 {
		t.Errorf("%d connections over a cap of 10", len(ss.conns))
	}
	if _, err := ss.begin(bob, bobPos); err != nil {
		t.Error("at the server-wide cap, alice's new connections evicted bob's")
	}
	// A new user takes the least recently used of all.
	carol := connKey{userID: "@carol:x", deviceID: "C", connID: "main"}
	ss.begin(carol, "")
	if ss.conns[carol] == nil || len(ss.conns) > 10 {
		t.Errorf("carol's connection: %v, %d connections", ss.conns[carol] != nil, len(ss.conns))
	}
}
