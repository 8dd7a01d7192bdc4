package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// burstMsg is a message of TestPushCountsAfterBurst and what its push rules give.
type burstMsg struct {
	id       string
	sender   int
	mentions []int
	pizza    bool
	thread   bool // a reply in the thread of the first message
	phase    int
}

// TestPushCountsAfterBurst: several senders send a burst of messages into a room of a few
// hundred members, most of them on the default push rules (whose notifications the server
// stores once per message), some with rules of their own, some mentioned, one joining late,
// one leaving and coming back, one reading half way. Every member's unread counts in /sync
// (per thread too), the /notifications of a mentioned member and the pushes to a member's
// push gateway must be exactly what each member's rules say about the messages sent while
// they were joined.
func TestPushCountsAfterBurst(t *testing.T) {
	const members = 300
	const (
		muted   = 5  // a room rule without actions
		keyword = 6  // a content rule: "pizza" highlights
		reader  = 7  // reads up to the end of phase 1
		late    = 8  // joins after phase 1
		leaver  = 9  // leaves after phase 1, back before phase 3
		pushed  = 10 // has an HTTP pusher
		senders = 5  // users 0 to 4 send
	)
	gw := newFakeGateway(t)
	srv := StartServer(t)
	srv.Stop()
	srv.editConfig(t, "registrations_burst: 100", "registrations_burst: 1000")
	srv.Start()
	us := make([]*Client, members)
	for i := range us {
		us[i] = srv.Register(t, fmt.Sprintf("m%03d", i))
	}
	room := us[0].CreateRoom(map[string]any{"preset": "public_chat"})
	parallelDo(t, members-1, func(i int) error {
		if i+1 == late {
			return nil
		}
		return do(srv, us[i+1], "POST", "/_matrix/client/v3/join/"+esc(room), map[string]any{})
	})
	us[muted].MustDo("PUT", "/_matrix/client/v3/pushrules/global/room/"+esc(room), map[string]any{"actions": []any{}})
	us[keyword].MustDo("PUT", "/_matrix/client/v3/pushrules/global/content/pizza",
		map[string]any{"pattern": "pizza", "actions": []any{"notify", map[string]any{"set_tweak": "highlight"}}})
	us[pushed].MustDo("POST", "/_matrix/client/v3/pushers/set", map[string]any{"kind": "http", "app_id": "org.example.app",
		"pushkey": "key", "app_display_name": "Example", "device_display_name": "phone", "lang": "en",
		"data": map[string]any{"url": gw.srv.URL + "/_matrix/push/v1/notify"}})

	var msgs []*burstMsg
	// sendPhase sends the phase's messages from the senders at once, its last one after the rest.
	sendPhase := func(phase, from, n int) {
		var ms []*burstMsg
		for i := from; i < from+n; i++ {
			m := &burstMsg{sender: i % senders, pizza: i%4 == 2, thread: phase == 3, phase: phase}
			if i%7 == 3 {
				m.mentions = []int{11 + i%3, 1, keyword}
			}
			ms = append(ms, m)
		}
		send := func(i int) error {
			m := ms[i]
			content := map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("message %d", from+i)}
			if m.pizza {
				content["body"] = fmt.Sprintf("message %d: pizza?", from+i)
			}
			ids := []string{}
			for _, u := range m.mentions {
				ids = append(ids, us[u].UserID)
			}
			content["m.mentions"] = map[string]any{"user_ids": ids}
			if m.thread {
				content["m.relates_to"] = map[string]any{"rel_type": "m.thread", "event_id": msgs[0].id}
			}
			r, err := rawDo(srv, us[m.sender].Token, "PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/b%d", esc(room), from+i), mustMarshal(content))
			if err != nil || r.Status != 200 {
				return fmt.Errorf("send %d: %v %d %s", from+i, err, r.Status, r.Raw)
			}
			m.id = str(r.Body, "event_id")
			return nil
		}
		parallelDo(t, n-1, send)
		if err := send(n - 1); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, ms...)
	}

	sendPhase(1, 0, 25)
	us[reader].MustDo("POST", fmt.Sprintf("/_matrix/client/v3/rooms/%s/receipt/m.read/%s", esc(room), esc(msgs[len(msgs)-1].id)), map[string]any{})
	join(us[late], room)
	us[leaver].MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{})
	sendPhase(2, 25, 25)
	join(us[leaver], room)
	sendPhase(3, 50, 5)
	// A notice notifies nobody, not even those it mentions or whose keyword it holds.
	expectOK(t, sendTxn(us[0], room, "m.room.message", "notice", map[string]any{"msgtype": "m.notice", "body": "pizza notice",
		"m.mentions": map[string]any{"user_ids": []string{us[11].UserID}}}), "send notice")

	// want returns what member u's rules give for m: whether it notifies them and highlights.
	want := func(u int, m *burstMsg) (notify, highlight bool) {
		joined := !(u == late && m.phase == 1) && !(u == leaver && m.phase == 2)
		if !joined || u == m.sender || u == muted {
			return false, false
		}
		for _, x := range m.mentions {
			highlight = highlight || x == u
		}
		return true, highlight || (u == keyword && m.pizza)
	}
	const filter = `{"room":{"state":{"lazy_load_members":true},"timeline":{"limit":1,"unread_thread_notifications":true}}}`
	parallelDo(t, members, func(u int) error {
		var main, thread [2]int // notifications, highlights
		for _, m := range msgs {
			n, h := want(u, m)
			if !n || (u == reader && m.phase == 1) {
				continue
			}
			c := &main
			if m.thread {
				c = &thread
			}
			c[0]++
			if h {
				c[1]++
			}
		}
		r, err := rawDo(srv, us[u].Token, "GET", "/_matrix/client/v3/sync?filter="+esc(filter), nil)
		if err != nil || r.Status != 200 {
			return fmt.Errorf("sync of %d: %v %d", u, err, r.Status)
		}
		jr := obj(r.Body, "rooms", "join", room)
		un := obj(jr, "unread_notifications")
		th := obj(obj(jr, "unread_thread_notifications"), msgs[0].id)
		got := [2][2]any{{un["notification_count"], un["highlight_count"]}, {th["notification_count"], th["highlight_count"]}}
		exp := [2][2]any{{float64(main[0]), float64(main[1])}, {float64(thread[0]), float64(thread[1])}}
		if thread[0] == 0 {
			exp[1] = [2]any{nil, nil} // no entry for a thread without notifications
		}
		if got != exp {
			return fmt.Errorf("member %d: counts (main, thread) = %v, want %v", u, got, exp)
		}
		return nil
	})

	// /notifications lists every notification of a mentioned member, read or not (the
	// messages of a phase were sent at once, so their order is not checked).
	var all, highlights []string
	for i := len(msgs) - 1; i >= 0; i-- {
		if n, h := want(11, msgs[i]); n {
			all = append(all, msgs[i].id)
			if h {
				highlights = append(highlights, msgs[i].id)
			}
		}
	}
	notes := list(us[11].MustDo("GET", "/_matrix/client/v3/notifications?limit=100", nil).Body, "notifications")
	checkSameIDs(t, "/notifications", sorted(noteIDs(notes)), sorted(all))
	notes = list(us[11].MustDo("GET", "/_matrix/client/v3/notifications?limit=100&only=highlight", nil).Body, "notifications")
	checkSameIDs(t, "/notifications?only=highlight", sorted(noteIDs(notes)), sorted(highlights))

	// The push gateway hears of every message that notifies the member with the pusher.
	wantPushes := 0
	for _, m := range msgs {
		if n, _ := want(pushed, m); n {
			wantPushes++
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for gw.count() < wantPushes && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if got := gw.count(); got != wantPushes {
		t.Errorf("the gateway received %d notifications, want %d", got, wantPushes)
	}
}

// noteIDs returns the event IDs of /notifications entries, in order.
func noteIDs(notes []event) []string {
	var out []string
	for _, n := range notes {
		out = append(out, evID(obj(n, "event")))
	}
	return out
}

// do sends an authenticated request without failing the test (for use in goroutines) and
// wants a 200.
func do(srv *Server, c *Client, method, path string, body any) error {
	r, err := rawDo(srv, c.Token, method, path, mustMarshal(body))
	if err != nil {
		return err
	}
	if r.Status != 200 {
		return fmt.Errorf("%s %s: %d %s", method, path, r.Status, r.Raw)
	}
	return nil
}

func sorted(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// parallelDo runs f(0..n-1), eight at a time, and fails the test with the errors.
func parallelDo(t *testing.T, n int, f func(int) error) {
	t.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []string
		sem  = make(chan struct{}, 8)
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			if err := f(i); err != nil {
				mu.Lock()
				errs = append(errs, err.Error())
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d failed:\n%s", len(errs), strings.Join(errs, "\n"))
	}
}
