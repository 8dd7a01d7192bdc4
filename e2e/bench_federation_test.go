package e2e

import (
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"
)

// BenchmarkFederation measures delivery between two Lattice servers over TLS on loopback: 8
// senders on A send into a room that a user of B has joined, as fast as they can, and B's
// user long-polls /sync. It reports A's sending rate, the rate at which the messages reach
// B's client, and the send-to-/sync delay on B at a steady 100 messages/s (at saturation
// the delay would measure queueing). Every message must reach B once. Run it with:
//
//	go test ./e2e/ -run '^$' -bench Federation -benchtime 1x
func BenchmarkFederation(b *testing.B) {
	ca := newTestCA(b)
	srvA, srvB := startFederatedServer(b, ca), startFederatedServer(b, ca)
	const senders, burst, paced, rate = 8, 100, 30, 100
	users := make([]*Client, senders)
	for i := range users {
		users[i] = srvA.Register(b, fmt.Sprintf("sender%d", i))
	}
	room := users[0].CreateRoom(map[string]any{"preset": "public_chat"})
	for _, u := range users[1:] {
		u.MustDo("POST", "/_matrix/client/v3/join/"+esc(room), map[string]any{})
	}
	bob := srvB.Register(b, "bob")
	bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(room)+"?via="+esc(srvA.Name), map[string]any{})

	// B's client records when each message body reaches it.
	var mu sync.Mutex
	arrived := map[string]time.Time{}
	stop := make(chan struct{})
	done := make(chan struct{})
	since := str(bob.Sync("", "", 0).Body, "next_batch")
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := bob.Sync(since, "", 1000)
			since = str(r.Body, "next_batch")
			now := time.Now()
			mu.Lock()
			for _, e := range list(obj(obj(r.Body, "rooms", "join"), room, "timeline"), "events") {
				if body := str(obj(e, "content"), "body"); body != "" {
					if _, dup := arrived[body]; dup {
						b.Errorf("%q reached B twice", body)
					}
					arrived[body] = now
				}
			}
			mu.Unlock()
		}
	}()
	waitAll := func(bodies []string) time.Time {
		deadline := time.Now().Add(120 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			var last time.Time
			missing := 0
			for _, body := range bodies {
				if t, ok := arrived[body]; ok {
					if t.After(last) {
						last = t
					}
				} else {
					missing++
				}
			}
			mu.Unlock()
			if missing == 0 {
				return last
			}
			time.Sleep(20 * time.Millisecond)
		}
		b.Fatalf("messages never reached B")
		return time.Time{}
	}

	// 1. Throughput: every sender as fast as it can.
	var bodies []string
	var wg sync.WaitGroup
	var bmu sync.Mutex
	start := time.Now()
	for i, u := range users {
		wg.Add(1)
		go func(i int, u *Client) {
			defer wg.Done()
			for j := range burst {
				body := fmt.Sprintf("burst %d-%d", i, j)
				rawSend(b, u, room, body)
				bmu.Lock()
				bodies = append(bodies, body)
				bmu.Unlock()
			}
		}(i, u)
	}
	wg.Wait()
	sent := time.Since(start)
	last := waitAll(bodies)
	b.ReportMetric(float64(len(bodies))/sent.Seconds(), "msg/s-sent-on-A")
	b.ReportMetric(float64(len(bodies))/last.Sub(start).Seconds(), "msg/s-delivered-on-B")

	// 2. Delivery delay at a steady rate.
	var lat []time.Duration
	sentAt := map[string]time.Time{}
	tick := time.NewTicker(time.Second / rate)
	var pacedBodies []string
	for n := 0; n < senders*paced; n++ {
		<-tick.C
		body := fmt.Sprintf("paced %d", n)
		sentAt[body] = time.Now()
		go rawSend(b, users[n%senders], room, body)
		pacedBodies = append(pacedBodies, body)
	}
	tick.Stop()
	waitAll(pacedBodies)
	close(stop)
	<-done
	mu.Lock()
	for _, body := range pacedBodies {
		lat = append(lat, arrived[body].Sub(sentAt[body]))
	}
	mu.Unlock()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(ms(percentile(lat, 50)), "ms-A-to-B-p50")
	b.ReportMetric(ms(percentile(lat, 99)), "ms-A-to-B-p99")
}

// rawSend sends one text message as u with its own transaction ID.
func rawSend(b *testing.B, u *Client, room, body string) {
	txn := nextTxnID()
	r := u.Do("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/send/m.room.message/"+esc(txn), map[string]any{"msgtype": "m.text", "body": body})
	if r.Status != 200 {
		b.Errorf("send %q: %d %s", body, r.Status, r.Raw)
	}
}
