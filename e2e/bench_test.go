package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"testing"
	"time"
)

// BenchmarkWorkload measures the foundation workload against the real binary (SQLite, or
// PostgreSQL with LATTICE_E2E_BACKEND=postgres): throughput and send latency with 16 senders
// as fast as they can, each in their own room and then all in one shared room; send-to-/sync
// delivery latency with 16 long-polling receivers while the 16 senders keep the shared room
// busy at a steady 200 messages/s (latency at saturation would measure queueing, not
// delivery); initial /sync of a user in 200 rooms; and peak RSS. It also checks that every acknowledged message is found again by
// /messages and by /sync. Run it with:
//
//	go test ./e2e/ -run '^$' -bench Workload -benchtime 1x
func BenchmarkWorkload(b *testing.B) {
	srv := StartServer(b)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxConnsPerHost: 128}}
	const senders, perSenderOwn, perSenderShared, perSenderPaced = 16, 200, 100, 50
	const steadyRate = 200 // messages/s over all senders while delivery is measured

	users := make([]*Client, senders)
	receivers := make([]*Client, senders)
	for i := range users {
		users[i] = srv.Register(b, fmt.Sprintf("sender%d", i))
		receivers[i] = srv.Register(b, fmt.Sprintf("receiver%d", i))
	}
	// 1. Own rooms.
	own := make([]string, senders)
	for i, u := range users {
		own[i] = u.CreateRoom(map[string]any{"preset": "private_chat"})
	}
	ownLat, ownRate := sendLoad(b, hc, srv, users, func(i int) string { return own[i] }, perSenderOwn, "own")
	b.ReportMetric(ownRate, "msg/s-own-rooms")
	b.ReportMetric(ms(percentile(ownLat, 50)), "ms-send-p50-own")
	b.ReportMetric(ms(percentile(ownLat, 99)), "ms-send-p99-own")

	// 2. One shared room, as fast as the senders can.
	shared := users[0].CreateRoom(map[string]any{"preset": "public_chat"})
	for _, u := range users[1:] {
		u.MustDo("POST", "/_matrix/client/v3/join/"+esc(shared), map[string]any{})
	}
	sharedLat, sharedRate := sendLoadTimed(b, hc, srv, users, func(int) string { return shared }, perSenderShared, "shared", 0, nil)
	b.ReportMetric(sharedRate, "msg/s-shared-room")
	b.ReportMetric(ms(percentile(sharedLat, 50)), "ms-send-p50-shared")
	b.ReportMetric(ms(percentile(sharedLat, 99)), "ms-send-p99-shared")

	// 3. Delivery to 16 long-polling receivers in the shared room, at a steady rate.
	for _, u := range receivers {
		u.MustDo("POST", "/_matrix/client/v3/join/"+esc(shared), map[string]any{})
	}
	var mu sync.Mutex
	sentAt := map[string]time.Time{}
	var delivery []time.Duration
	stop := make(chan struct{})
	var wg sync.WaitGroup
	seen := make([]map[string]bool, len(receivers))
	for i, rc := range receivers {
		seen[i] = map[string]bool{}
		since := rc.Sync("", `{"room":{"timeline":{"limit":1}}}`, 0).Body["next_batch"].(string)
		wg.Add(1)
		go func(i int, rc *Client, since string) {
			defer wg.Done()
			filter := url.QueryEscape(`{"room":{"timeline":{"limit":500}}}`)
			for {
				select {
				case <-stop:
					return
				default:
				}
				body, err := get(hc, srv.URL+"/_matrix/client/v3/sync?timeout=2000&filter="+filter+"&since="+since, rc.Token)
				if err != nil {
					b.Errorf("receiver sync: %v", err)
					return
				}
				now := time.Now()
				var resp struct {
					NextBatch string `json:"next_batch"`
					Rooms     struct {
						Join map[string]struct {
							Timeline struct {
								Events []struct {
									Type    string `json:"type"`
									Content struct {
										Body string `json:"body"`
									} `json:"content"`
								} `json:"events"`
								Limited bool `json:"limited"`
							} `json:"timeline"`
						} `json:"join"`
					} `json:"rooms"`
				}
				if err := json.Unmarshal(body, &resp); err != nil {
					b.Errorf("receiver sync: %v: %s", err, body)
					return
				}
				since = resp.NextBatch
				mu.Lock()
				for _, ev := range resp.Rooms.Join[shared].Timeline.Events {
					if ev.Type != "m.room.message" {
						continue
					}
					if seen[i][ev.Content.Body] {
						b.Errorf("receiver %d got %q twice", i, ev.Content.Body)
					}
					seen[i][ev.Content.Body] = true
					if t0, ok := sentAt[ev.Content.Body]; ok {
						delivery = append(delivery, now.Sub(t0))
					}
				}
				mu.Unlock()
			}
		}(i, rc, since)
	}
	interval := time.Duration(senders) * time.Second / steadyRate
	_, pacedRate := sendLoadTimed(b, hc, srv, users, func(int) string { return shared }, perSenderPaced, "paced", interval, func(body string, t time.Time) {
		mu.Lock()
		sentAt[body] = t
		mu.Unlock()
	})
	// Let the receivers drain, then stop them.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		done := true
		for i := range seen {
			done = done && len(seen[i]) >= senders*perSenderPaced
		}
		mu.Unlock()
		if done {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	b.ReportMetric(pacedRate, "msg/s-paced")
	b.ReportMetric(ms(percentile(delivery, 50)), "ms-delivery-p50")
	b.ReportMetric(ms(percentile(delivery, 99)), "ms-delivery-p99")
	for i := range seen {
		if len(seen[i]) != senders*perSenderPaced {
			b.Errorf("receiver %d saw %d of %d messages through /sync", i, len(seen[i]), senders*perSenderPaced)
		}
	}
	// Every acknowledged message is in /messages.
	if n := countMessages(b, hc, srv, users[0], shared); n != senders*(perSenderShared+perSenderPaced) {
		b.Errorf("/messages of the shared room has %d of %d messages", n, senders*(perSenderShared+perSenderPaced))
	}
	for i, room := range own {
		if n := countMessages(b, hc, srv, users[i], room); n != perSenderOwn {
			b.Errorf("/messages of own room %d has %d of %d messages", i, n, perSenderOwn)
		}
	}

	// 3. Initial sync of a user in 200 rooms.
	many := srv.Register(b, "manyrooms")
	for i := 0; i < 200; i++ {
		room := many.CreateRoom(map[string]any{"name": fmt.Sprintf("room %d", i)})
		many.Send(room, "hello")
	}
	var best time.Duration
	for i := 0; i < 3; i++ {
		t0 := time.Now()
		r := many.Sync("", "", 0)
		d := time.Since(t0)
		if n := len(r.Body["rooms"].(map[string]any)["join"].(map[string]any)); n != 200 {
			b.Errorf("initial sync has %d rooms, want 200", n)
		}
		if i == 0 || d < best {
			best = d
		}
	}
	b.ReportMetric(ms(best), "ms-initial-sync-200-rooms")
	b.ReportMetric(float64(srv.PeakRSSKiB())/1024, "MB-peak-RSS")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, len(s)*p/100)]
}

func sendLoad(b *testing.B, hc *http.Client, srv *Server, users []*Client, room func(int) string, n int, tag string) ([]time.Duration, float64) {
	return sendLoadTimed(b, hc, srv, users, room, n, tag, 0, nil)
}

// sendLoadTimed has every user send n messages, one after the other, all users at once; with
// an interval, each user sends at most one message per interval.
func sendLoadTimed(b *testing.B, hc *http.Client, srv *Server, users []*Client, room func(int) string, n int, tag string, interval time.Duration, onSend func(string, time.Time)) ([]time.Duration, float64) {
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	for i, u := range users {
		wg.Add(1)
		go func(i int, u *Client) {
			defer wg.Done()
			next := time.Now().Add(time.Duration(i) * interval / time.Duration(len(users)))
			for j := 0; j < n; j++ {
				if interval > 0 {
					time.Sleep(time.Until(next))
					next = next.Add(interval)
				}
				body := fmt.Sprintf("%s %d %d", tag, i, j)
				path := fmt.Sprintf("%s/_matrix/client/v3/rooms/%s/send/m.room.message/%s-%d", srv.URL, url.PathEscape(room(i)), tag, j)
				js, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": body})
				t0 := time.Now()
				if onSend != nil {
					onSend(body, t0)
				}
				req, _ := http.NewRequest("PUT", path, bytes.NewReader(js))
				req.Header.Set("Authorization", "Bearer "+u.Token)
				resp, err := hc.Do(req)
				if err != nil {
					b.Errorf("send: %v", err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("send: status %d", resp.StatusCode)
					return
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}(i, u)
	}
	wg.Wait()
	elapsed := time.Since(start)
	return lat, float64(len(users)*n) / elapsed.Seconds()
}

func get(hc *http.Client, u, token string) ([]byte, error) {
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	return body, err
}

// countMessages pages back through the whole room with /messages and counts the distinct
// m.room.message events.
func countMessages(b *testing.B, hc *http.Client, srv *Server, c *Client, roomID string) int {
	seen := map[string]bool{}
	from := ""
	for {
		u := srv.URL + "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + "/messages?dir=b&limit=1000"
		if from != "" {
			u += "&from=" + url.QueryEscape(from)
		}
		body, err := get(hc, u, c.Token)
		if err != nil {
			b.Errorf("messages: %v", err)
			return len(seen)
		}
		var resp struct {
			Chunk []struct {
				EventID string `json:"event_id"`
				Type    string `json:"type"`
			} `json:"chunk"`
			End string `json:"end"`
		}
		if err := json.Unmarshal(body, &resp); err != nil {
			b.Errorf("messages: %v", err)
			return len(seen)
		}
		for _, ev := range resp.Chunk {
			if ev.Type == "m.room.message" {
				seen[ev.EventID] = true
			}
		}
		if resp.End == "" || len(resp.Chunk) == 0 {
			return len(seen)
		}
		from = resp.End
	}
}
