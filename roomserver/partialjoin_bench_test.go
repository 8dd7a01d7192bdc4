package roomserver

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// BenchmarkSendJoinBigRoom measures send_join's resident side (make_join's template, the
// join accepted, the answer built, without HTTP) in a room of 2,000 local members, with the
// full state and with omit_members, and reports the events and bytes of the answer:
//
//	go test ./roomserver/ -run '^$' -bench SendJoinBigRoom -benchtime 20x
func BenchmarkSendJoinBigRoom(b *testing.B) {
	ctx := context.Background()
	s, roomID := benchRoom(b, 2000)
	_, key, _ := ed25519.GenerateKey(nil)
	n := 0
	for _, omit := range []bool{false, true} {
		b.Run(fmt.Sprintf("omit_members=%v", omit), func(b *testing.B) {
			var events, bytes int
			for i := 0; i < b.N; i++ {
				n++
				user := fmt.Sprintf("@joiner%d:remote", n)
				tmpl, err := s.MakeMembership(ctx, roomID, user, spec.Join, []gomatrixserverlib.RoomVersion{"12"})
				if err != nil {
					b.Fatal(err)
				}
				join, err := gomatrixserverlib.MustGetRoomVersion(tmpl.Version).NewEventBuilderFromProtoEvent(&tmpl.Event).Build(time.Now(), "remote", "ed25519:r", key)
				if err != nil {
					b.Fatal(err)
				}
				var sa *StateAndAuth
				if omit {
					sa, err = s.SendJoinOmittingMembers(ctx, "remote", join)
				} else {
					sa, err = s.SendMembership(ctx, "remote", spec.Join, join)
				}
				if err != nil {
					b.Fatal(err)
				}
				for _, p := range append(sa.State, sa.AuthChain...) {
					events++
					bytes += len(p.JSON())
				}
			}
			b.ReportMetric(float64(events)/float64(b.N), "events/answer")
			b.ReportMetric(float64(bytes)/float64(b.N), "bytes/answer")
		})
	}
}
