package roomserver

import (
	"context"
	"fmt"
	"testing"
)

func BenchmarkSendSerial(b *testing.B) {
	ctx := context.Background()
	s, _ := newTestServer(b, "sqlite:"+b.TempDir()+"/bench.db")
	roomID, err := s.CreateRoom(ctx, "@alice:test", "D", CreateRoomRequest{Preset: PresetPublicChat})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.SendMessage(ctx, Sender{UserID: "@alice:test", DeviceID: "D"}, roomID, "m.room.message", mustJSON(map[string]string{"body": fmt.Sprint(i)}), fmt.Sprint(i)); err != nil {
			b.Fatal(err)
		}
	}
}
