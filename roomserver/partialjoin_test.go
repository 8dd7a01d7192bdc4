package roomserver

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestSendJoinOmittingMembers builds the partial send_join answer on each backend in a
// server started after the room was made (no state key in its cache), in an unnamed room:
// the memberships in state are the creator's (she set up the room) and the heroes', the
// first five other members by user ID; servers_in_room names the members' servers joined
// before the join.
func TestSendJoinOmittingMembers(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, _ := newTestServer(t, url)
		roomID, err := s.CreateRoom(ctx, "@alice:test", "D", CreateRoomRequest{Preset: PresetPublicChat})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 12; i++ {
			if _, err := s.Join(ctx, fmt.Sprintf("@m%02d:test", i), roomID, ""); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Leave(ctx, "@m00:test", roomID, ""); err != nil {
			t.Fatal(err)
		}

		fresh, _ := newTestServer(t, url)
		_, key, _ := ed25519.GenerateKey(nil)
		tmpl, err := fresh.MakeMembership(ctx, roomID, "@bob:remote", spec.Join, []gomatrixserverlib.RoomVersion{"12"})
		if err != nil {
			t.Fatal(err)
		}
		join, err := gomatrixserverlib.MustGetRoomVersion(tmpl.Version).NewEventBuilderFromProtoEvent(&tmpl.Event).Build(time.Now(), "remote", "ed25519:r", key)
		if err != nil {
			t.Fatal(err)
		}
		sa, err := fresh.SendJoinOmittingMembers(ctx, "remote", join)
		if err != nil {
			t.Fatal(err)
		}
		var members []string
		inState := map[string]bool{}
		for _, p := range sa.State {
			inState[p.EventID()] = true
			if p.Type() == spec.MRoomMember {
				members = append(members, *p.StateKey())
			}
		}
		sort.Strings(members)
		want := "[@alice:test @m01:test @m02:test @m03:test @m04:test]"
		if !sa.MembersOmitted || fmt.Sprint(members) != want || fmt.Sprint(sa.ServersInRoom) != "[test]" {
			t.Errorf("omitted %v, memberships %v (want %s), servers %v", sa.MembersOmitted, members, want, sa.ServersInRoom)
		}
		for _, p := range sa.AuthChain {
			if inState[p.EventID()] {
				t.Errorf("the auth chain repeats %s of state", p.Type())
			}
		}
	})
}
