package e2e

// State resolution across a fork that a server which is not Lattice makes, fed to Lattice
// through /send: the two changes of state resolution v2.1 (room version 12) over v2 (room
// versions 2-11), in the scenarios MSC4297 gives for them. In both, one side of the fork
// reaches Lattice by "partial synchronisation": get_missing_events gives nothing, so Lattice
// takes the state before the missing prev_event from /state_ids, and that state holds an
// outdated event for one key, while the auth chains of the other events say otherwise:
//   - "starts from an empty set" (MSC4297 problem A): the state at the fork has the older of
//     two join rules of an admin who has since left. v2 replays both join rules on top of the
//     unconflicted state, where the admin is gone, rejects both and leaves the room with no
//     join rules at all; v2.1 replays them on top of their own auth events, and the newer
//     wins.
//   - "conflicted state subgraph" (MSC4297 problem B): the state at the fork has the first
//     power levels, although an event of that state (a topic) cites the newest, whose sender
//     was given power by an intermediate power levels event. That intermediate event is in
//     every auth chain, so not in the auth difference: v2 replays the newest power levels
//     against the first and rejects it (a state reset); v2.1 replays the events between the
//     two conflicted ones too, and the newest power levels stay.
// Each runs in a version 11 room (v2, whose answer the test expects there) and a version 12
// room, with the room's history sent to Lattice as it was made ("linear"), or learnt only as
// the state and auth chain of a gap ("gappy": the intermediate events are then only in
// Lattice's auth chains, fetched with /state_ids and /event), or as such a gap from a server
// whose /state_ids auth chain falls short ("short": Lattice must fetch the rest with
// /event_auth rather than drop state events).

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// forkScenario is the true history of a room and the lie about it: history makes events on
// the fake (after alice joined) and returns them, the state key the state at the fork has an
// outdated event for, that event (stale), and the event the key resolves to with state
// resolution v2 and v2.1 (nil: the key is absent).
type forkScenario func(t *testing.T, h *interopHost, room *hostedRoom, c *fakeClock) (evs []gomatrixserverlib.PDU, key string, stale, v2, v21 gomatrixserverlib.PDU)

// fakeClock gives the fake's events origin_server_ts one second apart (in the past), so that
// the orderings of the state resolution, which break ties by timestamp, are the ones the
// scenarios describe.
type fakeClock struct{ next time.Time }

func (c *fakeClock) tick() time.Time {
	c.next = c.next.Add(time.Second)
	return c.next
}

// emitAt is interopHost.emit with the event's origin_server_ts from the clock.
func (h *interopHost) emitAt(t *testing.T, c *fakeClock, room *hostedRoom, sender, evType string, stateKey *string, content any) gomatrixserverlib.PDU {
	t.Helper()
	return h.emitTimed(t, c.tick(), room, sender, evType, stateKey, content)
}

// powerLevelsWith returns the content of the room's current power levels with users set to
// the given levels.
func powerLevelsWith(t *testing.T, h *interopHost, room *hostedRoom, users map[string]int) map[string]any {
	t.Helper()
	h.mu.Lock()
	pl := room.state[spec.MRoomPowerLevels+"|"]
	h.mu.Unlock()
	var content map[string]any
	if err := json.Unmarshal(pl.Content(), &content); err != nil {
		t.Fatalf("power levels content: %v", err)
	}
	u, _ := content["users"].(map[string]any)
	if u == nil {
		u = map[string]any{}
	}
	for id, lvl := range users {
		u[id] = lvl
	}
	content["users"] = u
	return content
}

// emptyStartScenario is MSC4297's problem A: adm, made an admin by the creator, sets the join
// rules to invite (jr1) and then back to public (jr2), and leaves. The state at the fork has
// jr1.
func emptyStartScenario(t *testing.T, h *interopHost, room *hostedRoom, c *fakeClock) ([]gomatrixserverlib.PDU, string, gomatrixserverlib.PDU, gomatrixserverlib.PDU, gomatrixserverlib.PDU) {
	host, adm, empty := "@host:"+string(h.fake.name), "@adm:"+string(h.fake.name), ""
	join := h.emitAt(t, c, room, adm, spec.MRoomMember, &adm, map[string]any{"membership": "join"})
	promote := h.emitAt(t, c, room, host, spec.MRoomPowerLevels, &empty, powerLevelsWith(t, h, room, map[string]int{adm: 100}))
	jr1 := h.emitAt(t, c, room, adm, spec.MRoomJoinRules, &empty, map[string]any{"join_rule": "invite"})
	jr2 := h.emitAt(t, c, room, adm, spec.MRoomJoinRules, &empty, map[string]any{"join_rule": "public"})
	leave := h.emitAt(t, c, room, adm, spec.MRoomMember, &adm, map[string]any{"membership": "leave"})
	// v2: jr1 and jr2 are replayed on the unconflicted state, where adm has left: both fail
	// and the key is gone. v2.1: both are replayed on their auth events (adm joined, an
	// admin); same sender power, so jr2, the later, is applied last.
	return []gomatrixserverlib.PDU{join, promote, jr1, jr2, leave}, spec.MRoomJoinRules + "|", jr1, nil, jr2
}

// subgraphScenario is MSC4297's problem B: the creator gives bob 50 (plB), bob gives charlie
// 50 (plC), and charlie sets the topic, citing plC. The state at the fork has the room's first
// power levels (pl0) with charlie's topic. charlie joins on bob's invite, so that his join
// cites the invite, which no other event's auth chain holds (the "short" variant's auth chain
// leaves it out).
func subgraphScenario(t *testing.T, h *interopHost, room *hostedRoom, c *fakeClock) ([]gomatrixserverlib.PDU, string, gomatrixserverlib.PDU, gomatrixserverlib.PDU, gomatrixserverlib.PDU) {
	host, bob, charlie, empty := "@host:"+string(h.fake.name), "@bob:"+string(h.fake.name), "@charlie:"+string(h.fake.name), ""
	h.mu.Lock()
	pl0 := room.state[spec.MRoomPowerLevels+"|"]
	h.mu.Unlock()
	jb := h.emitAt(t, c, room, bob, spec.MRoomMember, &bob, map[string]any{"membership": "join"})
	inv := h.emitAt(t, c, room, bob, spec.MRoomMember, &charlie, map[string]any{"membership": "invite"})
	jc := h.emitAt(t, c, room, charlie, spec.MRoomMember, &charlie, map[string]any{"membership": "join"})
	plB := h.emitAt(t, c, room, host, spec.MRoomPowerLevels, &empty, powerLevelsWith(t, h, room, map[string]int{bob: 50}))
	plC := h.emitAt(t, c, room, bob, spec.MRoomPowerLevels, &empty, powerLevelsWith(t, h, room, map[string]int{charlie: 50}))
	topic := h.emitAt(t, c, room, charlie, "m.room.topic", &empty, map[string]any{"topic": "set by charlie"})
	// The conflicted events are pl0 and plC; plB is on the path plC -> plB -> pl0 and in both
	// full auth chains (the topic cites plC). v2 replays pl0 then plC, which bob may not send
	// under pl0. v2.1 replays pl0, plB, plC (and the join rules and bob's join, also between
	// the two): plC passes.
	return []gomatrixserverlib.PDU{jb, inv, jc, plB, plC, topic}, spec.MRoomPowerLevels + "|", pl0, pl0, plC
}

// TestFederationInteropStateResEmptyStart: MSC4297 problem A through /send (see the file
// comment): Lattice's current state after the fork has jr2 in a v12 room, no join rules in
// a v11 room.
func TestFederationInteropStateResEmptyStart(t *testing.T) {
	testStateResFork(t, "emptystart", emptyStartScenario)
}

// TestFederationInteropStateResConflictedSubgraph: MSC4297 problem B through /send (see the
// file comment): Lattice's current state after the fork keeps plC in a v12 room, and resets
// to pl0 in a v11 room.
func TestFederationInteropStateResConflictedSubgraph(t *testing.T) {
	testStateResFork(t, "subgraph", subgraphScenario)
}

func testStateResFork(t *testing.T, name string, scenario forkScenario) {
	lat, h := startInterop(t)
	for _, ver := range []gomatrixserverlib.RoomVersion{gomatrixserverlib.RoomVersionV11, gomatrixserverlib.RoomVersionV12} {
		for _, variant := range []string{"linear", "gappy", "short"} {
			t.Run("v"+string(ver)+"/"+variant, func(t *testing.T) {
				runStateResFork(t, lat, h, ver, fmt.Sprintf("%s-v%s-%s", name, ver, variant), variant, scenario)
			})
		}
	}
}

// hideGap makes the fake answer get_missing_events of room with no events, as a server does
// when the gap is too large, until the returned function is called.
func (h *interopHost) hideGap(room *hostedRoom) (restore func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.missing = func(r *hostedRoom, req missingReq) []gomatrixserverlib.PDU {
		if r.id == room.id {
			return nil
		}
		return r.missingEvents(req)
	}
	return func() {
		h.mu.Lock()
		h.missing = nil
		h.mu.Unlock()
	}
}

func runStateResFork(t *testing.T, lat *Server, h *interopHost, ver gomatrixserverlib.RoomVersion, name, variant string, scenario forkScenario) {
	alice := lat.Register(t, "alice-"+name)
	host := "@host:" + string(h.fake.name)
	alias := "#" + name + ":" + string(h.fake.name)
	room := h.createRoom(t, ver, host, "State res "+name, alias)
	as := newSyncer(alice, bigTimeline)
	as.once(0)
	if r := joinRoom(alice, alias); r.Status != 200 || str(r.Body, "room_id") != room.id {
		t.Fatalf("alice joining %s: %d %s; fake saw %v", alias, r.Status, r.Raw, h.fake.requestsLike("/_matrix/federation/"))
	}
	clock := &fakeClock{next: time.Now().Add(-time.Minute)}

	// The room's true history, as the fake made it.
	evs, key, stale, v2, v21 := scenario(t, h, room, clock)
	deliverHistory(t, h, alice, as, room, clock, evs, variant)
	h.mu.Lock()
	truth := copyPDUState(room.state)
	h.mu.Unlock()
	if st, r := roomState(alice, room.id); st == nil {
		t.Fatalf("GET state: %d %s", r.Status, r.Raw)
	} else if d := stateIDsDiff(truth, st); d != "" {
		t.Fatalf("before the fork, Lattice's state is not the fake's: %s", d)
	}
	sinceBefore := as.since

	// The fork: p follows the history, but the fake says the state before it has the stale
	// event for key; x follows p and is what the fake pushes.
	p := h.emitAt(t, clock, room, host, "m.room.message", nil, message("at the fork"))
	x := h.emitAt(t, clock, room, host, "m.room.message", nil, message("after the fork"))
	h.mu.Lock()
	lie := copyPDUState(room.before[p.EventID()])
	lie[key] = stale
	room.before[p.EventID()] = lie
	h.mu.Unlock()
	restore := h.hideGap(room)
	h.sendToLattice(t, x)
	restore()
	if r := h.fake.requestsLike("/state_ids/" + url.PathEscape(room.id)); !anyContains(r, "event_id="+url.QueryEscape(p.EventID())) {
		t.Errorf("Lattice never asked /state_ids at the fork %s: the test did not make the fork it means to; fake saw %v", p.EventID(), h.fake.requestsLike("/_matrix/federation/"))
	}
	if missing := syncUntilSeen(t, as, []string{x.EventID()}, 30*time.Second); len(missing) > 0 {
		t.Errorf("the event after the fork %s never reached alice's /sync (soft-failed?); last sync %.1500s", x.EventID(), as.last.Raw)
	}

	resolved := v2
	if gomatrixserverlib.MustGetRoomVersion(ver).StateResAlgorithm() == gomatrixserverlib.StateResV2_1 {
		resolved = v21
	}
	checkResolvedState(t, alice, room.id, truth, key, stale, resolved, sinceBefore)
	h.checkNoFailures(t)
}

// checkResolvedState checks that alice's client sees, after the fork, the state truth with key
// resolved to resolved (nil: absent): in GET /state, and in /sync's state_after, initial and
// incremental since sinceBefore (taken before the fork).
func checkResolvedState(t *testing.T, alice *Client, roomID string, truth map[string]gomatrixserverlib.PDU, key string, stale, resolved gomatrixserverlib.PDU, sinceBefore string) {
	t.Helper()
	// The resolved state: the true state, but for key.
	want := copyPDUState(truth)
	delete(want, key)
	if resolved != nil {
		want[key] = resolved
	}
	t.Logf("%s resolves to %s (the state at the fork has %s, the room's history %s)",
		key, idOrNone(resolved), stale.EventID(), truth[key].EventID())
	st, r := roomState(alice, roomID)
	if st == nil {
		t.Fatalf("GET state: %d %s", r.Status, r.Raw)
	}
	if d := stateIDsDiff(want, st); d != "" {
		t.Errorf("GET /rooms/{roomId}/state after the fork is not the expected resolution: %s", d)
	}
	// /sync with use_state_after: an initial sync gives the whole state; the incremental one
	// since before the fork gives what changed, which must agree.
	for _, since := range []string{"", sinceBefore} {
		q := url.Values{"filter": {bigTimeline}, "use_state_after": {"true"}, "timeout": {"0"}}
		if since != "" {
			q.Set("since", since)
		}
		resp := alice.MustDo("GET", "/_matrix/client/v3/sync?"+q.Encode(), nil)
		got := map[string]event{}
		for _, e := range list(obj(resp.Body, "rooms", "join", roomID, "state_after"), "events") {
			got[evType(e)+"|"+str(e, "state_key")] = e
		}
		if since == "" {
			if d := stateIDsDiff(want, got); d != "" {
				t.Errorf("initial /sync state_after after the fork is not the expected resolution: %s", d)
			}
			continue
		}
		if e, ok := got[key]; ok && (resolved == nil || evID(e) != resolved.EventID()) {
			t.Errorf("incremental /sync state_after has %s %s, want %s", key, evID(e), idOrNone(resolved))
		}
		if _, ok := got[key]; !ok && resolved != nil && resolved.EventID() != truth[key].EventID() {
			t.Errorf("incremental /sync state_after lacks the change of %s to %s: %.1500s", key, resolved.EventID(), resp.Raw)
		}
	}
}

// deliverHistory gets the events evs of room to Lattice: in a /send transaction ("linear"),
// or ("gappy") only as the state and auth chain before a later event, with
// get_missing_events answering nothing, so that Lattice takes the state from /state_ids and
// the events are outliers, known only to the auth chains. alice then answers, so that her
// event is Lattice's one forward extremity, with the true state after it. "short" is "gappy"
// with an auth chain that falls short: it lacks the events of evs that are not in the state
// itself (in the subgraph scenario, plB and charlie's invite), which Lattice must then fetch
// with /event_auth.
func deliverHistory(t *testing.T, h *interopHost, alice *Client, as *syncer, room *hostedRoom, clock *fakeClock, evs []gomatrixserverlib.PDU, variant string) {
	t.Helper()
	if variant == "linear" {
		h.sendToLattice(t, evs...)
		if missing := syncUntilSeen(t, as, pduIDs(evs), 30*time.Second); len(missing) > 0 {
			t.Fatalf("the history never reached alice's /sync: missing %v; last sync %.1500s", missing, as.last.Raw)
		}
		return
	}
	last := evs[len(evs)-1]
	gap := h.emitAt(t, clock, room, "@host:"+string(h.fake.name), "m.room.message", nil, message("after the history"))
	restore := h.hideGap(room)
	if variant == "short" {
		h.mu.Lock()
		inState := map[string]bool{}
		for _, ev := range room.before[last.EventID()] {
			inState[ev.EventID()] = true
		}
		h.shortAuthChain = map[string]bool{}
		for _, ev := range evs {
			h.shortAuthChain[ev.EventID()] = !inState[ev.EventID()]
		}
		h.mu.Unlock()
	}
	h.sendToLattice(t, gap)
	restore()
	h.mu.Lock()
	h.shortAuthChain = nil
	h.mu.Unlock()
	if r := h.fake.requestsLike("/state_ids/" + url.PathEscape(room.id)); !anyContains(r, "event_id="+url.QueryEscape(last.EventID())) {
		t.Errorf("Lattice never asked /state_ids at %s: the history did not reach it as a gap; fake saw %v", last.EventID(), h.fake.requestsLike("/_matrix/federation/"))
	}
	if missing := syncUntilSeen(t, as, []string{gap.EventID()}, 30*time.Second); len(missing) > 0 {
		t.Fatalf("the event after the gap %s never reached alice's /sync; last sync %.1500s", gap.EventID(), as.last.Raw)
	}
	reply := say(alice, room.id, "merging")
	if h.waitSent(30*time.Second, func(p gomatrixserverlib.PDU) bool { return p.EventID() == reply }) == nil {
		h.checkNoFailures(t)
		t.Fatalf("alice's reply %s never reached the fake (30 s)", reply)
	}
}

// stateIDsDiff describes how the state Lattice reports (got) differs by event ID from want
// ("" when equal).
func stateIDsDiff(want map[string]gomatrixserverlib.PDU, got map[string]event) string {
	var d []string
	for k, p := range want {
		if g := evID(got[k]); g != p.EventID() {
			if g == "" {
				g = "none"
			}
			d = append(d, fmt.Sprintf("%s: got %s, want %s", k, g, p.EventID()))
		}
	}
	for k, e := range got {
		if _, ok := want[k]; !ok {
			d = append(d, fmt.Sprintf("%s: got %s, want none", k, evID(e)))
		}
	}
	sort.Strings(d)
	return strings.Join(d, "; ")
}

// idOrNone is the event's ID, or "none".
func idOrNone(p gomatrixserverlib.PDU) string {
	if p == nil {
		return "none"
	}
	return p.EventID()
}

func anyContains(list []string, s string) bool {
	for _, l := range list {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}
