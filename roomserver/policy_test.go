package roomserver

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

	"github.com/lattice-chat/lattice/storage"
	"github.com/lattice-chat/lattice/storage/storagetest"
)

// fakePolicyServer is a Remote that only answers policy server requests, signing events
// unless their body is "spam".
type fakePolicyServer struct {
	Remote
	name  spec.ServerName
	key   ed25519.PrivateKey
	calls int
}

func (p *fakePolicyServer) PolicySign(_ context.Context, server spec.ServerName, ev gomatrixserverlib.PDU) (string, error) {
	p.calls++
	if server != p.name {
		return "", errors.New("not a policy server")
	}
	if gjson.GetBytes(ev.Content(), "body").Str == "spam" {
		return "", spec.Forbidden("The message appears to contain possible spam")
	}
	redacted, err := gomatrixserverlib.MustGetRoomVersion(ev.Version()).RedactEventJSON(ev.JSON())
	if err != nil {
		return "", err
	}
	signed, err := gomatrixserverlib.SignJSON(string(p.name), policyKeyID, p.key, redacted)
	if err != nil {
		return "", err
	}
	return gjson.GetBytes(signed, "signatures."+escapeJSONPath(string(p.name))+"."+escapeJSONPath(string(policyKeyID))).Str, nil
}

// TestPolicyServer: in a room whose m.room.policy names a server with a joined user, local
// events are signed by that policy server before they are stored, and its refusal is the
// client's error; received events without its signature are soft-failed unless it signs
// them when asked; the m.room.policy event itself needs no signature.
func TestPolicyServer(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, _ := newTestServer(t, url)
		psPub, psKey, _ := ed25519.GenerateKey(nil)
		ps := &fakePolicyServer{name: "ps", key: psKey}
		s.SetRemote(ps)
		_, remoteKey, _ := ed25519.GenerateKey(nil)
		f := &fakeRemote{t: t, s: s, name: "ps", key: remoteKey, now: time.Now()}
		alice, bot := "@alice:test", "@bot:ps"
		roomID, err := s.CreateRoom(ctx, alice, "D", CreateRoomRequest{Preset: PresetPublicChat})
		if err != nil {
			t.Fatal(err)
		}
		// Without a joined user of the policy server, the room does not use it.
		policy := map[string]any{"via": "ps", "public_keys": map[string]string{"ed25519": base64.RawStdEncoding.EncodeToString(psPub)}}
		if _, err := s.SetState(ctx, Sender{UserID: alice}, roomID, mRoomPolicy, "", mustJSON(policy)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SendMessage(ctx, Sender{UserID: alice}, roomID, "m.room.message", mustJSON(map[string]string{"body": "spam"}), ""); err != nil {
			t.Fatalf("a room whose policy server has no member still asked it: %v", err)
		}
		f.join(roomID, bot, "12")

		id, err := s.SendMessage(ctx, Sender{UserID: alice}, roomID, "m.room.message", mustJSON(map[string]string{"body": "hello"}), "")
		if err != nil {
			t.Fatalf("a message the policy server signs: %v", err)
		}
		ev, _ := s.db.Event(ctx, id)
		if !gjson.GetBytes(ev.JSON, `signatures.ps.ed25519:policy_server`).Exists() {
			t.Fatalf("the stored event has no policy server signature: %s", ev.JSON)
		}
		_, err = s.SendMessage(ctx, Sender{UserID: alice}, roomID, "m.room.message", mustJSON(map[string]string{"body": "spam"}), "")
		var me spec.MatrixError
		if !errors.As(err, &me) || me.ErrCode != spec.ErrorForbidden || me.Err != "The message appears to contain possible spam" {
			t.Fatalf("a message the policy server refuses: %v, want its M_FORBIDDEN verbatim", err)
		}
		// The m.room.policy event itself is not sent to the policy server.
		before := ps.calls
		if _, err := s.SetState(ctx, Sender{UserID: alice}, roomID, mRoomPolicy, "", mustJSON(policy)); err != nil {
			t.Fatal(err)
		}
		if ps.calls != before {
			t.Fatal("the m.room.policy state event was sent to the policy server")
		}

		// Received events: a spam message from the policy server's own user is soft-failed,
		// a good one is signed when asked and accepted.
		spam := f.build(roomID, bot, "m.room.message", nil, map[string]string{"body": "spam"}, s.headIDs(t, roomID))
		if err := s.InputRemote(ctx, "ps", spam); err != nil {
			t.Fatal(err)
		}
		if ev, _ := s.db.Event(ctx, spam.EventID()); ev == nil || ev.Status != storage.StatusSoftFailed {
			t.Fatalf("a received event the policy server refuses: %+v, want soft-failed", ev)
		}
		good := f.build(roomID, bot, "m.room.message", nil, map[string]string{"body": "fine"}, s.headIDs(t, roomID))
		if err := s.InputRemote(ctx, "ps", good); err != nil {
			t.Fatal(err)
		}
		if ev, _ := s.db.Event(ctx, good.EventID()); ev == nil || !ev.Visible() {
			t.Fatalf("a received event the policy server signs when asked: %+v, want accepted", ev)
		}
	})
}
