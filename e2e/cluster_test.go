package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// clusterConfig sets database.cluster: true in a generated config (generate-config has no
// flag for it: the option is a preview).
func clusterConfig(t testing.TB, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("\n  cluster: false\n")) {
		t.Fatal("generated config has no database.cluster")
	}
	b = bytes.Replace(b, []byte("\n  cluster: false\n"), []byte("\n  cluster: true\n"), 1)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// serveOnce runs `lattice serve` with config and returns its output if it exits within
// the timeout, failing the test if it is still running then.
func serveOnce(t *testing.T, config string, timeout time.Duration) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "serve", "--config", config)
	// A refused PostgreSQL server tries for a minute by default (a dead machine's session).
	cmd.Env = append(os.Environ(), "LATTICE_TEST_SERVE_LOCK_WAIT=2s")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("second lattice serve still running after %s; output:\n%s", timeout, out)
	}
	return string(out), err
}

// TestSQLiteOneProcess: a second `lattice serve` on the SQLite database another process
// serves refuses to start with a clear error, and starts once the first one has been killed
// (SIGKILL: the OS lock goes with the process).
func TestSQLiteOneProcess(t *testing.T) {
	if os.Getenv("LATTICE_E2E_BACKEND") == "postgres" || os.Getenv("LATTICE_E2E_CLUSTER") != "" {
		t.Skip("SQLite only")
	}
	srv := StartServer(t)
	out, err := serveOnce(t, srv.ConfigPath, 20*time.Second)
	if err == nil {
		t.Fatalf("second process exited without error:\n%s", out)
	}
	if !strings.Contains(out, "another lattice process is already serving the SQLite database") {
		t.Fatalf("second process error is not the lock's:\n%s", out)
	}
	// The first one still serves.
	alice := srv.Register(t, "alice")
	alice.CreateRoom(map[string]any{})

	srv.Kill()
	srv.Start() // the same data dir and database: the lock went with the killed process
	alice = srv.Login(t, "alice")
	if r := alice.MustDo("GET", "/_matrix/client/v3/joined_rooms", nil); len(r.Body["joined_rooms"].([]any)) != 1 {
		t.Fatalf("joined_rooms after restart: %s", r.Raw)
	}
}

// startCluster starts n lattice processes with database.cluster on one new PostgreSQL
// database, sharing the first one's signing key, as one server would be deployed.
func startCluster(t *testing.T, n int) []*Server {
	t.Helper()
	dbURL := storagetest.NewPostgresDatabase(t)
	var procs []*Server
	for i := 0; i < n; i++ {
		s := newServer(t, WithDatabase(dbURL))
		clusterConfig(t, s.ConfigPath)
		if i > 0 {
			key, err := os.ReadFile(filepath.Join(procs[0].DataDir, "signing.key"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(s.DataDir, "signing.key"), key, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(s.Stop)
		s.Start()
		procs = append(procs, s)
	}
	return procs
}

// on returns a client of the same device talking to another process.
func (c *Client) on(s *Server) *Client {
	return &Client{t: c.t, srv: s, UserID: c.UserID, DeviceID: c.DeviceID, Token: c.Token}
}

// TestClusterThreeProcesses runs three processes on one PostgreSQL database: accounts and
// tokens work on every process, a write on one wakes a long-poll on another, and concurrent
// sends from all three into one room leave one linear DAG in which every process serves
// every message exactly once.
func TestClusterThreeProcesses(t *testing.T) {
	procs := startCluster(t, 3)
	p1, p2, p3 := procs[0], procs[1], procs[2]

	t.Run("lone server refused", func(t *testing.T) {
		// A process without database.cluster must not join the cluster's database.
		lone := newServer(t, WithDatabase(dbURLOf(t, p1)))
		out, err := serveOnce(t, lone.ConfigPath, 20*time.Second)
		if err == nil || !strings.Contains(out, "another lattice process serves this database") {
			t.Fatalf("lone server on a cluster's database: err %v, output:\n%s", err, out)
		}
	})

	// Registered on 1, logged in on 2; the token of 1 works on 3.
	alice1 := p1.Register(t, "alice")
	alice2 := p2.Login(t, "alice")
	alice3 := alice1.on(p3)
	bob3 := p3.Register(t, "bob")
	if r := alice3.MustDo("GET", "/_matrix/client/v3/account/whoami", nil); r.Body["user_id"] != alice1.UserID {
		t.Fatalf("whoami on 3 with 1's token: %s", r.Raw)
	}

	roomID := alice1.CreateRoom(map[string]any{"preset": "public_chat"})
	bob3.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID), map[string]any{})
	alice3.Send(roomID, "hello from 3")

	t.Run("long-poll wakes across processes", func(t *testing.T) {
		since := alice2.Sync("", "", 0).Body["next_batch"].(string)
		var worst time.Duration
		for i := 0; i < 5; i++ {
			done := make(chan time.Time, 1)
			var got Resp
			go func() {
				got = p2.Do(t, alice2.Token, "GET", "/_matrix/client/v3/sync?timeout=20000&since="+url.QueryEscape(since), nil)
				done <- time.Now()
			}()
			time.Sleep(300 * time.Millisecond) // the long-poll is waiting on 2
			text := fmt.Sprintf("wake %d", i)
			bob3.Send(roomID, text)
			sent := time.Now()
			var woke time.Time
			select {
			case woke = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("long-poll on process 2 not woken by a send on process 3 within 10 s")
			}
			lat := woke.Sub(sent)
			worst = max(worst, lat)
			if !strings.Contains(string(got.Raw), text) {
				t.Fatalf("woken sync lacks %q: %s", text, got.Raw)
			}
			since = got.Body["next_batch"].(string)
		}
		t.Logf("cross-process wake-up (send on 3 acknowledged -> long-poll on 2 answered): worst of 5: %s", worst)
		if worst > time.Second {
			t.Fatalf("cross-process wake-up took %s", worst)
		}
	})

	t.Run("join on one process seen by a long-poll on another", func(t *testing.T) {
		// carol's memberships are cached on 2 by her first sync; the join on 1 must not be
		// answered from that cache when it wakes her long-poll on 2, or her since-token
		// would move past the join.
		for i := 0; i < 3; i++ {
			carol2 := p2.Register(t, fmt.Sprintf("carol%d", i))
			since := carol2.Sync("", "", 0).Body["next_batch"].(string)
			carol2.Sync(since, "", 0)
			done := make(chan Resp, 1)
			go func() {
				done <- p2.Do(t, carol2.Token, "GET", "/_matrix/client/v3/sync?timeout=20000&since="+url.QueryEscape(since), nil)
			}()
			// Well within storage's 200 ms recheck interval of the sync's own cache read.
			time.Sleep(50 * time.Millisecond)
			carol2.on(p1).MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID), map[string]any{})
			var got Resp
			select {
			case got = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("long-poll on 2 not woken by a join on 1")
			}
			for k := 0; ; k++ {
				if rooms, _ := got.Body["rooms"].(map[string]any)["join"].(map[string]any); rooms[roomID] != nil {
					break
				}
				if k == 5 {
					t.Fatalf("the join on 1 never reached carol's /sync on 2: last %s", got.Raw)
				}
				got = carol2.Sync(got.Body["next_batch"].(string), "", 1000)
			}
		}
	})

	t.Run("redaction on one process seen on another", func(t *testing.T) {
		state := "/_matrix/client/v3/rooms/" + esc(roomID) + "/state/m.room.topic"
		topicID := alice1.MustDo("PUT", state, map[string]any{"topic": "secret topic"}).Body["event_id"].(string)
		// 3 reads (and caches) the topic, then 1 redacts it.
		if r := alice3.MustDo("GET", state, nil); r.Body["topic"] != "secret topic" {
			t.Fatalf("topic on 3: %s", r.Raw)
		}
		alice1.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/redact/"+esc(topicID)+"/r1", map[string]any{})
		r := alice3.Do("GET", state, nil)
		if strings.Contains(string(r.Raw), "secret topic") {
			t.Fatalf("topic on 3 after redaction on 1: %d %s", r.Status, r.Raw)
		}
		ev := alice3.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(topicID), nil)
		if strings.Contains(string(ev.Raw), "secret topic") {
			t.Fatalf("redacted event on 3: %s", ev.Raw)
		}
		// 3 parses the current topic when a client sets the same one again (a repeat sends
		// nothing new)...
		topicID = alice1.MustDo("PUT", state, map[string]any{"topic": "topic two"}).Body["event_id"].(string)
		if id := alice3.MustDo("PUT", state, map[string]any{"topic": "topic two"}).Body["event_id"]; id != topicID {
			t.Fatalf("repeating the topic on 3 made event %v, not %s", id, topicID)
		}
		// ... so after 1 redacts it, the same topic set on 3 is new, not the redacted one.
		alice1.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/redact/"+esc(topicID)+"/r2", map[string]any{})
		if id := alice3.MustDo("PUT", state, map[string]any{"topic": "topic two"}).Body["event_id"]; id == topicID {
			t.Fatalf("setting the redacted topic again on 3 returned the redacted event %s", id)
		}
		if r := alice2.MustDo("GET", state, nil); r.Body["topic"] != "topic two" {
			t.Fatalf("topic on 2: %s", r.Raw)
		}
	})

	t.Run("logout on one process ends the token on another", func(t *testing.T) {
		dave1 := p1.Register(t, "dave")
		dave2 := dave1.on(p2)
		dave2.MustDo("GET", "/_matrix/client/v3/account/whoami", nil) // cached on 2
		dave1.MustDo("POST", "/_matrix/client/v3/logout", map[string]any{})
		out := time.Now()
		for {
			r := dave2.Do("GET", "/_matrix/client/v3/account/whoami", nil)
			if r.Status == 401 {
				break
			}
			if time.Since(out) > 2*time.Second {
				t.Fatalf("token still accepted on 2 %s after logout on 1: %d %s", time.Since(out), r.Status, r.Raw)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("logout on 1 -> token refused on 2 after %s", time.Since(out))
	})

	t.Run("typing on one process seen on another", func(t *testing.T) {
		since := bob3.Sync("", `{"room":{"timeline":{"limit":1}}}`, 0).Body["next_batch"].(string)
		done := make(chan Resp, 1)
		go func() {
			done <- p3.Do(t, bob3.Token, "GET", "/_matrix/client/v3/sync?timeout=20000&since="+url.QueryEscape(since), nil)
		}()
		time.Sleep(100 * time.Millisecond)
		typingPath := "/_matrix/client/v3/rooms/" + esc(roomID) + "/typing/" + esc(alice1.UserID)
		alice1.MustDo("PUT", typingPath, map[string]any{"typing": true, "timeout": 30000})
		var got Resp
		select {
		case got = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("long-poll on 3 not woken by typing on 1")
		}
		if !strings.Contains(string(got.Raw), `"m.typing"`) || !strings.Contains(string(got.Raw), alice1.UserID) {
			t.Fatalf("typing on 1 not in the sync on 3: %s", got.Raw)
		}
		// Stopping on 2 is seen on 3 too, with 3's since-token.
		alice2.MustDo("PUT", typingPath, map[string]any{"typing": false})
		next := got.Body["next_batch"].(string)
		for k := 0; ; k++ {
			r := bob3.Sync(next, "", 5000)
			next = r.Body["next_batch"].(string)
			if strings.Contains(string(r.Raw), `"m.typing"`) && !strings.Contains(string(r.Raw), alice1.UserID) {
				break
			}
			if k == 3 {
				t.Fatalf("typing stop on 2 not seen on 3: %s", r.Raw)
			}
		}
	})

	t.Run("concurrent sends make one linear DAG", func(t *testing.T) {
		// A since-token from each process before the sends, to check incremental /sync.
		sinces := map[*Server]string{}
		for _, p := range procs {
			sinces[p] = alice1.on(p).Sync("", `{"room":{"timeline":{"limit":1}}}`, 0).Body["next_batch"].(string)
		}
		const perProc = 25
		senders := []*Client{alice1, alice2, bob3}
		var wg sync.WaitGroup
		errs := make(chan error, len(senders)*perProc)
		want := map[string]bool{}
		for i, c := range senders {
			for j := 0; j < perProc; j++ {
				want[fmt.Sprintf("c%d-%d", i, j)] = true
			}
			wg.Add(1)
			go func(i int, c *Client) {
				defer wg.Done()
				for j := 0; j < perProc; j++ {
					body := fmt.Sprintf("c%d-%d", i, j)
					if err := clusterSend(c, roomID, fmt.Sprintf("cc%d", j), body); err != nil {
						errs <- err
						return
					}
				}
			}(i, c)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for n, p := range procs {
			c := alice1.on(p)
			// /messages, newest first, the whole room.
			seen := map[string]int{}
			var ids []string
			from := ""
			for {
				q := "/_matrix/client/v3/rooms/" + esc(roomID) + "/messages?dir=b&limit=100"
				if from != "" {
					q += "&from=" + url.QueryEscape(from)
				}
				r := c.MustDo("GET", q, nil)
				chunk, _ := r.Body["chunk"].([]any)
				for _, e := range chunk {
					ev := e.(map[string]any)
					ids = append(ids, ev["event_id"].(string))
					if body, ok := ev["content"].(map[string]any)["body"].(string); ok && want[body] {
						seen[body]++
					}
				}
				end, _ := r.Body["end"].(string)
				if len(chunk) == 0 || end == "" {
					break
				}
				from = end
			}
			checkOnce(t, fmt.Sprintf("/messages on process %d", n+1), want, seen)
			// Incremental /sync from before the sends.
			seen = map[string]int{}
			since := sinces[p]
			for k := 0; k < 20; k++ {
				r := c.Sync(since, `{"room":{"timeline":{"limit":200}}}`, 0)
				room, _ := r.Body["rooms"].(map[string]any)["join"].(map[string]any)[roomID].(map[string]any)
				if room == nil {
					break
				}
				tl := room["timeline"].(map[string]any)
				if limited, _ := tl["limited"].(bool); limited {
					t.Fatalf("/sync on process %d: timeline limited", n+1)
				}
				for _, e := range tl["events"].([]any) {
					ev := e.(map[string]any)
					if body, ok := ev["content"].(map[string]any)["body"].(string); ok && want[body] {
						seen[body]++
					}
				}
				since = r.Body["next_batch"].(string)
			}
			checkOnce(t, fmt.Sprintf("/sync on process %d", n+1), want, seen)
			if n == 0 {
				checkLinear(t, p1.RegisterAdmin(t, "admin"), roomID, ids)
			}
		}
	})
}

// TestClusterBehindHAProxy drives three processes behind a round-robin HAProxy, as a
// client sees such a deployment: every request may land on another process, with the same
// token, since-token and pagination token.
func TestClusterBehindHAProxy(t *testing.T) {
	srv := newBalancedCluster(t, 3)
	t.Cleanup(srv.Stop)
	srv.Start()

	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	alice2 := srv.Login(t, "alice")
	roomID := alice.CreateRoom(map[string]any{"preset": "private_chat", "invite": []string{bob.UserID}})
	bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID), map[string]any{})

	// Incremental /sync through the balancer: each call may land on another process.
	since := bob.Sync("", "", 0).Body["next_batch"].(string)
	want := map[string]bool{}
	seen := map[string]int{}
	for i := 0; i < 12; i++ {
		body := fmt.Sprintf("lb %d", i)
		want[body] = true
		if i%2 == 0 {
			alice.Send(roomID, body)
		} else {
			alice2.Send(roomID, body)
		}
		r := bob.Sync(since, "", 0)
		since = r.Body["next_batch"].(string)
		countBodies(r, roomID, want, seen)
	}
	for k := 0; k < 3; k++ { // anything the last calls had not seen yet
		r := bob.Sync(since, "", 0)
		since = r.Body["next_batch"].(string)
		countBodies(r, roomID, want, seen)
	}
	checkOnce(t, "/sync through the balancer", want, seen)

	// A long-poll woken by a send, wherever each lands.
	for i := 0; i < 6; i++ {
		done := make(chan Resp, 1)
		go func() {
			done <- srv.Do(t, bob.Token, "GET", "/_matrix/client/v3/sync?timeout=20000&since="+url.QueryEscape(since), nil)
		}()
		time.Sleep(100 * time.Millisecond)
		text := fmt.Sprintf("poll %d", i)
		alice.Send(roomID, text)
		select {
		case r := <-done:
			if !strings.Contains(string(r.Raw), text) {
				// Woken by something else first: the next sync has it.
				r = bob.Sync(r.Body["next_batch"].(string), "", 5000)
				if !strings.Contains(string(r.Raw), text) {
					t.Fatalf("long-poll through the balancer lacks %q: %s", text, r.Raw)
				}
			}
			since = r.Body["next_batch"].(string)
		case <-time.After(10 * time.Second):
			t.Fatalf("long-poll through the balancer not woken by send %d", i)
		}
	}

	// /messages pagination tokens from one process work on the others.
	seen = map[string]int{}
	from := ""
	for {
		q := "/_matrix/client/v3/rooms/" + esc(roomID) + "/messages?dir=b&limit=3"
		if from != "" {
			q += "&from=" + url.QueryEscape(from)
		}
		r := bob.MustDo("GET", q, nil)
		chunk, _ := r.Body["chunk"].([]any)
		for _, e := range chunk {
			if body, ok := e.(map[string]any)["content"].(map[string]any)["body"].(string); ok && want[body] {
				seen[body]++
			}
		}
		end, _ := r.Body["end"].(string)
		if len(chunk) == 0 || end == "" {
			break
		}
		from = end
	}
	checkOnce(t, "/messages through the balancer", want, seen)

	// Sliding sync: each request of one connection may land on another process.
	r := slidingOK(t, bob, "", 0, allRooms(5, 1))
	pos := str(r.Body, "pos")
	for i := 0; i < 6; i++ {
		text := fmt.Sprintf("sliding %d", i)
		alice.Send(roomID, text)
		r = slidingOK(t, bob, pos, 5000, allRooms(5, 1))
		if !strings.Contains(string(r.Raw), text) {
			r = slidingOK(t, bob, str(r.Body, "pos"), 5000, allRooms(5, 1))
			if !strings.Contains(string(r.Raw), text) {
				t.Fatalf("sliding sync through the balancer lacks %q: %s", text, r.Raw)
			}
		}
		pos = str(r.Body, "pos")
	}

	// A process killed under the balancer: the others go on serving.
	srv.members[1].Kill()
	time.Sleep(700 * time.Millisecond) // the balancer's health check marks it down
	for i := 0; i < 6; i++ {
		alice.Send(roomID, fmt.Sprintf("after kill %d", i))
	}
	if r := bob.Sync(since, "", 0); !strings.Contains(string(r.Raw), "after kill 5") {
		t.Fatalf("sync after a process was killed: %s", r.Raw)
	}
	srv.members[1].Start()
}

// countBodies counts the messages of want in a /sync response's timeline of roomID.
func countBodies(r Resp, roomID string, want map[string]bool, seen map[string]int) {
	join, _ := r.Body["rooms"].(map[string]any)["join"].(map[string]any)
	room, _ := join[roomID].(map[string]any)
	if room == nil {
		return
	}
	tl, _ := room["timeline"].(map[string]any)
	evs, _ := tl["events"].([]any)
	for _, e := range evs {
		if body, ok := e.(map[string]any)["content"].(map[string]any)["body"].(string); ok && want[body] {
			seen[body]++
		}
	}
}

// dbURLOf returns the database URL in a server's config.
func dbURLOf(t *testing.T, s *Server) string {
	b, err := os.ReadFile(s.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "url: "); ok && strings.HasPrefix(strings.Trim(v, `"`), "postgres") {
			return strings.Trim(v, `"`)
		}
	}
	t.Fatal("no database url in config")
	return ""
}

// clusterSend sends a message without failing the test from a goroutine.
func clusterSend(c *Client, roomID, txn, body string) error {
	js, _ := json.Marshal(map[string]any{"msgtype": "m.text", "body": body})
	path := fmt.Sprintf("%s/_matrix/client/v3/rooms/%s/send/m.room.message/%s-%s", c.srv.URL, esc(roomID), c.DeviceID, txn)
	req, _ := http.NewRequest("PUT", path, bytes.NewReader(js))
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("send %s on %s: %d %s", body, c.srv.URL, resp.StatusCode, raw)
	}
	return nil
}

// checkOnce fails unless every wanted body was seen exactly once.
func checkOnce(t *testing.T, where string, want map[string]bool, seen map[string]int) {
	t.Helper()
	var bad []string
	for b := range want {
		if seen[b] != 1 {
			bad = append(bad, fmt.Sprintf("%s x%d", b, seen[b]))
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Fatalf("%s: %d messages not seen exactly once: %v", where, len(bad), bad)
	}
}

// checkLinear fails unless the room's events form one chain: a chain of n events has one
// forward extremity at depth n (the create event is at depth 1); a fork leaves two events at
// one depth, so the extremities, merged or not, end shallower.
func checkLinear(t *testing.T, admin *Client, roomID string, ids []string) {
	t.Helper()
	r := admin.MustDo("GET", adminRoom("v1", roomID, "/forward_extremities"), nil)
	xs, _ := r.Body["results"].([]any)
	if len(xs) != 1 {
		t.Fatalf("forward extremities: want 1, have %s", r.Raw)
	}
	if depth, _ := xs[0].(map[string]any)["depth"].(float64); int(depth) != len(ids) {
		t.Fatalf("the room's %d events are not one chain: its extremity is at depth %v (%s)", len(ids), depth, r.Raw)
	}
}

// newBalancedCluster prepares a server that is n processes with database.cluster on one new
// PostgreSQL database, sharing one data directory (signing key, media) and one configuration
// but for their client listeners, behind a round-robin HAProxy listening at the server's
// URL. Only the first process listens for federation.
func newBalancedCluster(t testing.TB, n int, opts ...ServerOption) *Server {
	t.Helper()
	base := newServer(t, append(slices.Clone(opts), WithDatabase(storagetest.NewPostgresDatabase(t)))...)
	clusterConfig(t, base.ConfigPath)
	listen := strings.TrimPrefix(base.URL, "http://")
	lb := &loadBalancer{listen: listen, dir: base.DataDir}
	used := map[string]bool{listen: true} // nothing listens on them yet: freePort may repeat one
	for i := 0; i < n; i++ {
		addr := listen
		for used[addr] {
			addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		}
		used[addr] = true
		m := &Server{
			t: t, Name: base.Name, DataDir: base.DataDir,
			ConfigPath: filepath.Join(base.DataDir, fmt.Sprintf("lattice-%d.yaml", i+1)),
			URL:        "http://" + addr,
			logPath:    filepath.Join(base.DataDir, fmt.Sprintf("lattice-%d.log", i+1)),
		}
		base.members = append(base.members, m)
		lb.backends = append(lb.backends, addr)
	}
	base.lb = lb
	return base
}

// writeMemberConfigs writes each process's configuration: the server's own (which a test
// may have changed since) with the process's client listener, and the federation listener
// on the first process only.
func (s *Server) writeMemberConfigs() {
	s.t.Helper()
	cfg, err := os.ReadFile(s.ConfigPath)
	if err != nil {
		s.t.Fatal(err)
	}
	listen := strings.TrimPrefix(s.URL, "http://")
	for i, m := range s.members {
		c := bytes.Replace(cfg, []byte(`listen: "`+listen+`"`), []byte(`listen: "`+strings.TrimPrefix(m.URL, "http://")+`"`), 1)
		if i > 0 {
			c = federationListen.ReplaceAll(c, []byte(`${1}""`))
		}
		if err := os.WriteFile(m.ConfigPath, c, 0o600); err != nil {
			s.t.Fatal(err)
		}
	}
}

// federationListen matches the federation listener's address in a generated config.
var federationListen = regexp.MustCompile(`(?m)(^federation_api:\n(?:  #.*\n)*  listen: )"[^"]*"`)

// loadBalancer is an HAProxy process balancing requests round-robin, each request on its
// own (no stickiness), over a cluster's processes; it outlives their restarts.
type loadBalancer struct {
	listen   string
	backends []string
	dir      string
	cmd      *exec.Cmd
}

func (lb *loadBalancer) start(t testing.TB) {
	t.Helper()
	if lb.cmd != nil {
		return
	}
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("haproxy is not installed: scripts/test.sh installs it")
		}
		t.Skip("haproxy is not installed (scripts/test.sh installs it)")
	}
	var b strings.Builder
	fmt.Fprintf(&b, `global
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 150s
  timeout server 150s
  retries 3
  option redispatch
  retry-on conn-failure empty-response
frontend lattice
  bind %s
  default_backend processes
backend processes
  balance roundrobin
  option httpchk GET /health
`, lb.listen)
	for i, addr := range lb.backends {
		fmt.Fprintf(&b, "  server p%d %s check inter 300ms fall 1 rise 1\n", i+1, addr)
	}
	cfgPath := filepath.Join(lb.dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(lb.dir, "haproxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	lb.cmd = exec.Command(bin, "-db", "-f", cfgPath)
	lb.cmd.Stdout, lb.cmd.Stderr = logFile, logFile
	if err := lb.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := lb.cmd
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + lb.listen + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(lb.dir, "haproxy.log"))
	t.Fatalf("haproxy did not start:\n%s", log)
}
