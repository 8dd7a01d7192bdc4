package roomserver

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// benchRoom is a server on a new SQLite database with a public room that @alice:test
// created and n local users @member0:test... joined.
func benchRoom(b *testing.B, n int) (*Server, string) {
	ctx := context.Background()
	s, _ := newTestServer(b, "sqlite:"+b.TempDir()+"/bench.db")
	roomID, err := s.CreateRoom(ctx, "@alice:test", "D", CreateRoomRequest{Preset: PresetPublicChat})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, err := s.Join(ctx, fmt.Sprintf("@member%d:test", i), roomID, ""); err != nil {
			b.Fatal(err)
		}
	}
	return s, roomID
}

// BenchmarkSendOneRoom measures building, authorising and committing messages into one room
// from 16 goroutines, without HTTP.
func BenchmarkSendOneRoom(b *testing.B) {
	ctx := context.Background()
	// Thirty members, as in a busy group: every message notifies them.
	s, roomID := benchRoom(b, 30)
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N/16 + 1
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if _, err := s.SendMessage(ctx, Sender{UserID: "@alice:test", DeviceID: "D"}, roomID, "m.room.message", mustJSON(map[string]string{"body": fmt.Sprint(g, i)}), fmt.Sprint(g, "-", i)); err != nil {
					b.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}

// BenchmarkSendBigRoom measures messages into a room of 2,000 local members on the default
// push rules, each of whom every message notifies, from 16 goroutines, without HTTP.
func BenchmarkSendBigRoom(b *testing.B) {
	ctx := context.Background()
	s, roomID := benchRoom(b, 2000)
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N/16 + 1
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if _, err := s.SendMessage(ctx, Sender{UserID: fmt.Sprintf("@member%d:test", g), DeviceID: "D"}, roomID, "m.room.message", mustJSON(map[string]string{"body": fmt.Sprint(g, i)}), fmt.Sprint(g, "-", i)); err != nil {
					b.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}

// BenchmarkSendSerial measures one message after another into a room of its creator alone,
// without HTTP.
func BenchmarkSendSerial(b *testing.B) {
	ctx := context.Background()
	s, roomID := benchRoom(b, 0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.SendMessage(ctx, Sender{UserID: "@alice:test", DeviceID: "D"}, roomID, "m.room.message", mustJSON(map[string]string{"body": fmt.Sprint(i)}), fmt.Sprint(i)); err != nil {
			b.Fatal(err)
		}
	}
}
