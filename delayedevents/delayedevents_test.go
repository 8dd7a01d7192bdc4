package delayedevents

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
	"github.com/lattice-chat/lattice/storage/storagetest"
)

type nopListener struct{}

func (nopListener) EventsCommitted(int64, []string) {}

// TestCrashAfterSendIsNotSentTwice plays a crash between the room event's commit and the
// delayed event's "sent": at the next start the scheduler sends it again, and the
// roomserver answers with the event of the first send instead of storing a second.
func TestCrashAfterSendIsNotSentTwice(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := storage.Open(ctx, url, 4)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		_, key, _ := ed25519.GenerateKey(nil)
		rooms := roomserver.New(roomserver.Config{ServerName: "test", KeyID: "ed25519:t", PrivateKey: key, DefaultVersion: "12"},
			db, nopListener{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		const alice = "@alice:test"
		roomID, err := rooms.CreateRoom(ctx, alice, "D", roomserver.CreateRoomRequest{Preset: roomserver.PresetPublicChat})
		if err != nil {
			t.Fatal(err)
		}
		cfg := config.DelayedEvents{MaxDelay: time.Hour, MaxPerUser: 10}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		from := roomserver.Sender{UserID: alice, DeviceID: "D"}
		for _, stateKey := range []*string{nil, new("_" + alice + "_D")} {
			kind := "message"
			if stateKey != nil {
				kind = "state"
			}
			first := New(cfg, db, rooms, log) // not started: its scheduler is the one that "crashed"
			id, err := first.Schedule(ctx, from, roomID, "m.rtc.member", stateKey, json.RawMessage(`{"n":1}`), 1, "")
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
			d, err := db.ClaimDelayedEvent(ctx, id, time.Now().UnixMilli())
			if err != nil {
				t.Fatal(err)
			}
			sentID, err := rooms.SendDelayed(ctx, from, d.RoomID, d.Type, d.StateKey, d.Content, d.DelayID, d.StickyMS)
			if err != nil {
				t.Fatal(err)
			}
			if stateKey != nil {
				// The state changes meanwhile, so that sending the same content again would
				// not be "unchanged state" but a new event.
				if _, err := rooms.SetState(ctx, from, roomID, "m.rtc.member", *stateKey, json.RawMessage(`{"n":2}`)); err != nil {
					t.Fatal(err)
				}
			}
			// ... and the process dies before FinishDelayedEvent. The next one starts:
			second := New(cfg, db, rooms, log)
			if err := second.Start(ctx); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				got, err := db.DelayedEvent(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if got.Status == storage.DelayedSent {
					if got.EventID != sentID {
						t.Errorf("%s: sent again as %s, want the first event %s", kind, got.EventID, sentID)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: still %s", kind, got.Status)
				}
				time.Sleep(10 * time.Millisecond)
			}
			second.Close()
		}
	})
}

// TestAnotherProcessesDelayedEvent: a delayed event scheduled through another process (which
// then died) is sent by this one's scheduler, found by its periodic read of what is due.
func TestAnotherProcessesDelayedEvent(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := storage.Open(ctx, url, 4)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		_, key, _ := ed25519.GenerateKey(nil)
		rooms := roomserver.New(roomserver.Config{ServerName: "test", KeyID: "ed25519:t", PrivateKey: key, DefaultVersion: "12"},
			db, nopListener{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		const alice = "@alice:test"
		roomID, err := rooms.CreateRoom(ctx, alice, "D", roomserver.CreateRoomRequest{Preset: roomserver.PresetPublicChat})
		if err != nil {
			t.Fatal(err)
		}
		cfg := config.DelayedEvents{MaxDelay: time.Hour, MaxPerUser: 10}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		this := New(cfg, db, rooms, log)
		this.rescan = 100 * time.Millisecond
		if err := this.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer this.Close()
		other := New(cfg, db, rooms, log) // never started: it dies right after scheduling
		id, err := other.Schedule(ctx, roomserver.Sender{UserID: alice, DeviceID: "D"}, roomID, "m.room.message", nil, json.RawMessage(`{"body":"x"}`), 50, "")
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			d, err := db.DelayedEvent(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if d.Status == storage.DelayedSent {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the other process's delayed event is still %s", d.Status)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
