package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// TestFederationInteropPushOnly: a server that answers none of Lattice's requests (every
// federation request gets 500) but pushes whole chains in one transaction can still talk to
// Lattice. In one transaction frank's message comes before frank's join, which is both its
// prev_event and one of its auth events; in the next, a parent and its child in DAG order.
// Lattice resolves each PDU with what it received, accepts all four, asks the fake for
// nothing about them, and alice's /sync shows them in DAG order.
func TestFederationInteropPushOnly(t *testing.T) {
	lat, h := startInterop(t)
	for _, ver := range interopVersions {
		t.Run("v"+string(ver), func(t *testing.T) {
			alice := lat.Register(t, "alice"+string(ver))
			room, as, eve := joinLatticeRoom(t, lat, h, alice, ver)
			h.mu.Lock()
			h.refuse = true
			h.mu.Unlock()
			defer func() {
				h.mu.Lock()
				h.refuse = false
				h.mu.Unlock()
			}()
			before := len(h.fake.requestsLike("/_matrix/federation/"))

			frank := "@frank:" + string(h.fake.name)
			join := h.emit(t, room, frank, spec.MRoomMember, &frank, map[string]any{"membership": "join", "displayname": "frank"})
			said := h.emit(t, room, frank, "m.room.message", nil, message("frank's first words"))
			h.sendToLattice(t, said, join)
			parent := h.emit(t, room, eve, "m.room.message", nil, message("parent"))
			child := h.emit(t, room, eve, "m.room.message", nil, message("child"))
			h.sendToLattice(t, parent, child)

			want := []string{join.EventID(), said.EventID(), parent.EventID(), child.EventID()}
			if missing := syncUntilSeen(t, as, want, 20*time.Second); len(missing) > 0 {
				t.Errorf("alice's /sync lacks %v (20 s); last sync %.1500s", missing, as.last.Raw)
			}
			checkSameIDs(t, "alice's /sync timeline of the pushed events", onlyIDs(ids(as.tl[room.id]), want), want)
			for _, r := range h.fake.requestsLike("/_matrix/federation/")[before:] {
				if !strings.HasPrefix(r, "PUT /_matrix/federation/v1/send/") {
					t.Errorf("Lattice asked the push-only server %s although the transactions held everything", r)
				}
			}
			h.checkNoFailures(t)
		})
	}
}
