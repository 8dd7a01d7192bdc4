package federationapi

import (
	"context"
	"errors"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
)

// TestSenderStats: the sender counts transactions sent and failed, and no destination is
// left counted as backing off once its queue is empty.
func TestSenderStats(t *testing.T) {
	f := newSenderFixture(t)
	f.queuePDUs(1, "remote.test")
	remote := newFakeRemote()
	remote.respond = func(_ context.Context, n int, _ gomatrixserverlib.Transaction) (fclient.RespSend, error) {
		if n <= 3 {
			return fclient.RespSend{}, errors.New("connection refused")
		}
		return fclient.RespSend{}, nil
	}
	s := f.start(remote)
	f.waitIdle("remote.test")
	if got, want := s.Stats(), (SenderStats{Sent: 1, Failed: 3, BackingOff: 0}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}
