package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestFederationPartitionHistory: two servers in one room are cut off from each other; each
// side sends messages and a state change; the partition heals and each side sends one more
// message, then a message that merges the two branches. On both servers, every event must be
// read exactly once, in an order consistent with the DAG (each side's events in the order they
// were sent, the merge last):
//   - paging /messages back from the newest event to m.room.create;
//   - an initial /sync with a small timeline, then /messages back from its prev_batch;
//   - /messages back from that /sync's next_batch;
//   - a client that synced before the partition, with incremental /syncs after it.
func TestFederationPartitionHistory(t *testing.T) {
	ca := newTestCA(t)
	a, b := startProxiedServer(t, ca), startProxiedServer(t, ca)
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat",
		"power_level_content_override": map[string]any{"users": map[string]any{bob.UserID: 100}}})
	if r := joinRoom(bob, room, a.Name); r.Status != 200 {
		t.Fatalf("bob joining over federation: %d %s", r.Status, r.Raw)
	}
	waitMembership(t, alice, room, bob.UserID, "join")
	syncers := []*syncer{newSyncer(alice, bigTimeline), newSyncer(bob, bigTimeline)}
	for _, s := range syncers {
		s.once(0)
	}

	a.Proxy.Partition()
	b.Proxy.Partition()
	// Each side's events in the order sent: a branch of the DAG.
	branches := map[*Client][]string{}
	for _, c := range []*Client{alice, bob} {
		for i := 0; i < 24; i++ {
			if i == 12 {
				r := putState(c, room, "m.room.topic", "", map[string]any{"topic": "set by " + c.UserID + " during the partition"})
				if r.Status != 200 {
					t.Fatalf("%s setting the topic: %d %s", c.UserID, r.Status, r.Raw)
				}
				branches[c] = append(branches[c], str(r.Body, "event_id"))
			}
			branches[c] = append(branches[c], say(c, room, fmt.Sprintf("partition %d from %s", i, c.UserID)))
		}
	}
	a.Proxy.Heal()
	b.Proxy.Heal()
	for _, c := range []*Client{alice, bob} {
		branches[c] = append(branches[c], say(c, room, "after the heal from "+c.UserID))
	}
	all := append(append([]string{}, branches[alice]...), branches[bob]...)
	waitHasEvents(t, []*Client{alice, bob}, room, all, 90*time.Second)
	merge := say(alice, room, "merge")
	waitHasEvents(t, []*Client{bob}, room, []string{merge}, 60*time.Second)
	all = append(all, merge)
	orders := [][]string{append(branches[alice], merge), append(branches[bob], merge)}

	for i, c := range []*Client{alice, bob} {
		what := fmt.Sprintf("%s's /messages from the newest event", c.UserID)
		h := history(c, room, 7)
		checkPartitionHistory(t, what, h, all, orders)
		if len(h) == 0 || evType(h[0]) != "m.room.create" {
			t.Errorf("%s: does not reach m.room.create", what)
		}

		what = fmt.Sprintf("%s's initial /sync (timeline limit 5) and /messages from its prev_batch", c.UserID)
		r := c.Sync("", `{"room":{"timeline":{"limit":5}}}`, 0)
		tl := obj(r.Body, "rooms", "join", room, "timeline")
		older := paginateBack(c, room, str(tl, "prev_batch"), 7, nil)
		checkPartitionHistory(t, what, append(reversed(older), list(tl, "events")...), all, orders)

		// A next_batch as from: the point after everything that /sync delivered.
		what = fmt.Sprintf("%s's /messages from a /sync next_batch", c.UserID)
		checkPartitionHistory(t, what, reversed(paginateBack(c, room, str(r.Body, "next_batch"), 7, nil)), all, orders)

		what = fmt.Sprintf("%s's incremental /syncs across the partition", c.UserID)
		if missing := syncUntilSeen(t, syncers[i], all, 30*time.Second); len(missing) > 0 {
			t.Errorf("%s: %d of %d events never came: %v", what, len(missing), len(all), missing)
		}
		checkPartitionHistory(t, what, syncers[i].tl[room], all, orders)
	}
}

// waitHasEvents waits until every client's server serves every event of ids with GET
// /rooms/{roomId}/event/{eventId}.
func waitHasEvents(t *testing.T, clients []*Client, roomID string, ids []string, timeout time.Duration) {
	t.Helper()
	ok, last := poll(timeout, 500*time.Millisecond, func() (bool, string) {
		for _, c := range clients {
			for _, id := range ids {
				if r := c.Do("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(id), nil); r.Status != 200 {
					return false, fmt.Sprintf("%s's server lacks %s: %d %s", c.UserID, id, r.Status, r.Raw)
				}
			}
		}
		return true, ""
	})
	if !ok {
		t.Fatalf("after %v: %s", timeout, last)
	}
}

// checkPartitionHistory checks that evs (oldest first) hold every event of want exactly once
// and that each sequence of orders appears in its order.
func checkPartitionHistory(t *testing.T, what string, evs []event, want []string, orders [][]string) {
	t.Helper()
	checkNoDuplicates(t, what, evs)
	at := map[string]int{}
	for i, e := range evs {
		at[evID(e)] = i
	}
	var missing []string
	for _, id := range want {
		if _, ok := at[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%s: %d of %d events missing: %v", what, len(missing), len(want), missing)
	}
	for _, order := range orders {
		for i := 1; i < len(order); i++ {
			x, okx := at[order[i-1]]
			y, oky := at[order[i]]
			if okx && oky && x > y {
				t.Errorf("%s: %s comes after %s, its descendant", what, order[i-1], order[i])
			}
		}
	}
}
