package e2e

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkPartialJoin measures joining a big room of another Lattice server with the full
// state and with partial state (send_join's omit_members): a resident server A hosts a named
// public room of LATTICE_BENCH_MEMBERS members (default 500, registered through the client
// API), and a fresh server B for each mode has bob join it. It reports, from POST /join: the
// join's answer, the first message sent, the first message of A's member received by bob,
// and the member list complete (/joined_members, which waits for the resync), and B's peak
// RSS over its whole life (VmHWM). Run it with:
//
//	go test ./e2e/ -run '^$' -bench PartialJoin -benchtime 1x
func BenchmarkPartialJoin(b *testing.B) {
	members := 500
	if n, err := strconv.Atoi(os.Getenv("LATTICE_BENCH_MEMBERS")); err == nil && n > 0 {
		members = n
	}
	ca := newTestCA(b)
	a := startFederatedServer(b, ca)
	a.Stop()
	cfg, err := os.ReadFile(a.ConfigPath)
	if err != nil {
		b.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte("registrations_per_minute: 60"), []byte("registrations_per_minute: 1000000"), 1)
	cfg = bytes.Replace(cfg, []byte("registrations_burst: 100"), []byte("registrations_burst: 1000000"), 1)
	if err := os.WriteFile(a.ConfigPath, cfg, 0o600); err != nil {
		b.Fatal(err)
	}
	a.Start()
	alice := a.Register(b, "alice")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "big room"})
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				u := a.Register(b, fmt.Sprintf("member%05d", i))
				u.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID), map[string]any{})
			}
		}()
	}
	t0 := time.Now()
	for i := range members {
		next <- i
	}
	close(next)
	wg.Wait()
	b.Logf("room of %d members built in %v", members+1, time.Since(t0).Round(time.Millisecond))
	speaker := a.Login(b, "member00000")

	// The server of the full join stays up: the room's members then include its bob, whose
	// join the partial join's resync fetches too.
	for i, mode := range []string{"full", "partial"} {
		srv := startFederatedServer(b, ca)
		if mode == "full" {
			srv.Stop()
			cfg, err := os.ReadFile(srv.ConfigPath)
			if err != nil {
				b.Fatal(err)
			}
			cfg = bytes.Replace(cfg, []byte("partial_state_joins: true"), []byte("partial_state_joins: false"), 1)
			if err := os.WriteFile(srv.ConfigPath, cfg, 0o600); err != nil {
				b.Fatal(err)
			}
			srv.Start()
		}
		bob := srv.Register(b, "bob")
		bs := newSyncer(bob, "")
		bs.once(0)
		start := time.Now()
		if r := joinRoom(bob, roomID, a.Name); r.Status != 200 {
			b.Fatalf("%s join: %d %s", mode, r.Status, r.Raw)
		}
		joined := time.Since(start)
		say(bob, roomID, "first message from B")
		sent := time.Since(start)
		heard := say(speaker, roomID, "first message to B")
		bs.waitEvent(roomID, heard)
		received := time.Since(start)
		list, r := joinedMembers(bob, roomID)
		if r.Status != 200 || len(list) != members+2+i {
			var lines []string
			for _, l := range strings.Split(srv.Log(), "\n") {
				if strings.Contains(l, "resync") || strings.Contains(l, "WARN") || strings.Contains(l, "ERROR") {
					lines = append(lines, l)
				}
			}
			b.Fatalf("%s: /joined_members on B: %d members, want %d; B's log:\n%s", mode, len(list), members+2+i, strings.Join(lines, "\n"))
		}
		complete := time.Since(start)
		rss := peakRSSKB(b, srv)
		b.Logf("%-7s join %v, first message sent %v, first message received %v, member list complete %v, B's peak RSS %d MB",
			mode, joined.Round(time.Millisecond), sent.Round(time.Millisecond), received.Round(time.Millisecond), complete.Round(time.Millisecond), rss/1024)
		b.ReportMetric(float64(sent.Milliseconds()), mode+"-sent-ms")
		b.ReportMetric(float64(complete.Milliseconds()), mode+"-complete-ms")
		b.ReportMetric(float64(rss/1024), mode+"-peak-rss-MB")
	}
}

// peakRSSKB returns the peak resident set size of s's process (VmHWM, in kB).
func peakRSSKB(b *testing.B, s *Server) int {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return kb
		}
	}
	return 0
}
