package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// asbridgeDir holds the bridge: package.json, package-lock.json, bridge.mjs and the stand-in
// for the Rust crypto bindings (crypto-stub/, see its package.json).
const asbridgeDir = "asbridge"

// asbridgeVersion is the matrix-appservice-bridge version package.json pins. 10.3.3 is the
// newest release that runs on Node.js 20 (11.x asks for 22).
const asbridgeVersion = "10.3.3"

// TestAppServiceBridge runs a small bridge built on the real matrix-appservice-bridge
// framework (asbridge/bridge.mjs) against the lattice binary. Lattice loads the bridge's
// registration; the bridge provisions a ghost user, answers a user query and an alias query
// (creating the portal room the Matrix user joins by alias), relays messages both ways, and
// receives typing and a read receipt as ephemeral events. Lattice is then killed with SIGKILL
// twice, once while the bridge refuses transactions and once while a transaction the bridge has
// processed is still unanswered; afterwards every message reaches the bridge, in order, each
// under one transaction ID only, and the bridge keeps working both ways.
//
// It needs node and npm; without them it is skipped, unless CI is set, where it fails.
func TestAppServiceBridge(t *testing.T) {
	node, npm := requireTool(t, "node"), requireTool(t, "npm")
	ensureNPMPackage(t, npm, asbridgeDir, "matrix-appservice-bridge", asbridgeVersion)

	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	b := startNodeBridge(t, srv, node)
	ghost := func(name string) string { return "@remote_" + name + ":" + srv.Name }

	// 1. Ghost users: the bridge registers a ghost (m.login.application_service) and sets its
	// display name as that user.
	r := b.post(t, "/remote/user", map[string]any{"name": "bob", "displayname": "Bob (remote)"})
	if got := str(r, "user_id"); got != ghost("bob") {
		t.Fatalf("provisioned ghost: user_id %q, want %q", got, ghost("bob"))
	}
	prof := alice.MustDo("GET", "/_matrix/client/v3/profile/"+esc(ghost("bob")), nil)
	if got := str(prof.Body, "displayname"); got != "Bob (remote)" {
		t.Fatalf("ghost's profile: displayname %q, want %q (%s)", got, "Bob (remote)", prof.Raw)
	}

	// 2. A user nobody provisioned is asked of the bridge, which creates it.
	prof = alice.Do("GET", "/_matrix/client/v3/profile/"+esc(ghost("carol")), nil)
	if prof.Status != 200 || str(prof.Body, "displayname") != "carol (remote)" {
		t.Errorf("profile of an unprovisioned ghost: %d %s, want 200 with displayname %q (the bridge's user query answer)",
			prof.Status, prof.Raw, "carol (remote)")
	}
	if st := b.state(t); !slices.Contains(st.UserQueries, ghost("carol")) {
		t.Errorf("user queries the bridge saw: %q, want %s", st.UserQueries, ghost("carol"))
	}

	// 3. Portal room by alias: joining an unknown alias in the bridge's namespace makes Lattice
	// ask the bridge, which creates the room with that alias.
	alias := "#remote_general:" + srv.Name
	jr := alice.Do("POST", "/_matrix/client/v3/join/"+esc(alias), map[string]any{})
	if jr.Status != 200 {
		t.Fatalf("join %s: %d %s (alias queries the bridge saw: %q)", alias, jr.Status, jr.Raw, b.state(t).AliasQueries)
	}
	room := str(jr.Body, "room_id")
	st := b.state(t)
	if !slices.Contains(st.AliasQueries, alias) || st.Portals["general"] != room {
		t.Fatalf("after joining %s (room %s): alias queries %q, portals %v", alias, room, st.AliasQueries, st.Portals)
	}
	sy := newSyncer(alice, "")
	sy.once(0)

	// 4. Matrix -> remote.
	var sent []string // alice's messages in the portal, in the order Lattice accepted them
	sendMsg := func(text string) {
		sent = append(sent, alice.Send(room, text))
	}
	sendMsg("hello remote network")
	b.waitState(t, "the bridge relays alice's first message", func(st bridgeState) bool {
		return st.inboxHas(sent[0])
	})
	if m := b.state(t).RemoteInbox[0]; m.Channel != "general" || m.Sender != alice.UserID || m.Text != "hello remote network" {
		t.Errorf("message on the remote network: %+v, want channel general from %s", m, alice.UserID)
	}

	// 5. Remote -> Matrix: the ghost joins the portal and speaks.
	remoteMsg := func(from, text string) string {
		t.Helper()
		r := b.post(t, "/remote/message", map[string]any{"channel": "general", "from": from, "text": text})
		id := str(r, "event_id")
		sy.waitEvent(room, id)
		for _, e := range sy.tl[room] {
			if evID(e) == id && (str(e, "sender") != ghost(from) || evBody(e) != text) {
				t.Errorf("remote message seen by alice: sender %q body %q, want %s %q", str(e, "sender"), evBody(e), ghost(from), text)
			}
		}
		return id
	}
	bobMsg := remoteMsg("bob", "hello from the remote side")

	// 6. Ephemeral events: alice's typing and her read receipt reach the bridge's controller.
	// A miss is reported, and the test goes on to the restarts.
	alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/typing/"+esc(alice.UserID), map[string]any{"typing": true, "timeout": 30000})
	b.expectState(t, 20*time.Second, "m.typing for alice reaches onEphemeralEvent", func(st bridgeState) bool { return st.typing(room, alice.UserID) })
	alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/receipt/m.read/"+esc(bobMsg), map[string]any{})
	b.expectState(t, 20*time.Second, "alice's m.read receipt reaches onEphemeralEvent", func(st bridgeState) bool {
		return st.receipt(room, bobMsg, alice.UserID)
	})
	alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/typing/"+esc(alice.UserID), map[string]any{"typing": false})

	// 7. Crash while the bridge is down: the messages wait in Lattice's queue, which outlives
	// a SIGKILL.
	b.post(t, "/mode", map[string]any{"refuse": true})
	refusedBefore := len(b.state(t).refused())
	for i := 1; i <= 10; i++ {
		sendMsg(fmt.Sprintf("while the bridge is down %d", i))
	}
	b.waitState(t, "Lattice tries to deliver while the bridge refuses", func(st bridgeState) bool {
		return len(st.refused()) > refusedBefore
	})
	srv.Kill()
	b.post(t, "/mode", map[string]any{"refuse": false})
	srv.Start()
	b.waitState(t, "every message sent while the bridge was down is delivered after the restart", func(st bridgeState) bool {
		return st.inboxHas(sent...)
	})

	// 8. Crash with a transaction in flight: the bridge has processed it but not yet answered.
	// After the restart it may come again, but only under the same transaction ID.
	b.post(t, "/mode", map[string]any{"delay_ms": 1500})
	accepted := len(b.state(t).accepted())
	for i := 1; i <= 15; i++ {
		sendMsg(fmt.Sprintf("during the crash %d", i))
	}
	b.waitState(t, "a transaction of the second batch reaches the bridge", func(st bridgeState) bool {
		for _, tx := range st.accepted()[accepted:] {
			for _, e := range tx.Events {
				if strings.HasPrefix(e.Body, "during the crash") {
					return true
				}
			}
		}
		return false
	})
	srv.Kill()
	b.post(t, "/mode", map[string]any{"delay_ms": 0})
	srv.Start()
	sendMsg("after the restarts")
	b.waitState(t, "every message reaches the bridge after the restarts", func(st bridgeState) bool {
		return st.inboxHas(sent...)
	})

	// 9. Still working both ways, ephemeral events included.
	remoteMsg("bob", "the remote side is still here")
	typingSeen := len(b.state(t).Ephemeral)
	alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/typing/"+esc(alice.UserID), map[string]any{"typing": true, "timeout": 30000})
	b.expectState(t, 20*time.Second, "m.typing after the restarts", func(st bridgeState) bool {
		return len(st.Ephemeral) > typingSeen && bridgeState{Ephemeral: st.Ephemeral[typingSeen:]}.typing(room, alice.UserID)
	})

	// 10. The record: no transaction lost, none delivered twice under another ID, order kept.
	checkTransactions(t, b.state(t), room, alice.UserID, sent)
}

// checkTransactions checks the transactions the bridge accepted: each carries the hs_token;
// a transaction ID that came twice came with the same events; no event came under two
// transaction IDs; a refused transaction came again under its ID with the same events;
// alice's messages in room came in the order she sent them, all of them; and the bridge's
// controller relayed each once, in order.
func checkTransactions(t *testing.T, st bridgeState, room, alice string, sent []string) {
	t.Helper()
	byTxn := map[string][]string{}
	txnOf := map[string]string{}
	var order []string
	retried := 0
	for _, tx := range st.accepted() {
		if !tx.Auth {
			t.Errorf("transaction %s without Authorization: Bearer <hs_token>", tx.TxnID)
		}
		evIDs := eventIDs(tx.Events)
		if prev, ok := byTxn[tx.TxnID]; ok {
			retried++
			if !slices.Equal(prev, evIDs) {
				t.Errorf("transaction %s came twice with different events: %q then %q", tx.TxnID, prev, evIDs)
			}
			continue
		}
		byTxn[tx.TxnID] = evIDs
		for _, e := range tx.Events {
			if other, ok := txnOf[e.EventID]; ok {
				t.Errorf("event %s (%s %q) delivered in transaction %s and again in %s", e.EventID, e.Type, e.Body, other, tx.TxnID)
				continue
			}
			txnOf[e.EventID] = tx.TxnID
			if e.RoomID == room && e.Sender == alice && e.Type == "m.room.message" {
				order = append(order, e.EventID)
			}
		}
	}
	// A transaction the bridge refused comes again under its own ID, crash or not.
	for _, tx := range st.refused() {
		if len(tx.Events) == 0 {
			continue
		}
		first := tx.Events[0].EventID
		if got, ok := txnOf[first]; !ok {
			t.Errorf("event %s of refused transaction %s never delivered", first, tx.TxnID)
		} else if got != tx.TxnID {
			t.Errorf("refused transaction %s came again as transaction %s", tx.TxnID, got)
		} else if evIDs := byTxn[got]; !slices.Equal(evIDs, eventIDs(tx.Events)) {
			t.Errorf("transaction %s: refused with events %q, accepted with %q", got, eventIDs(tx.Events), evIDs)
		}
	}
	t.Logf("%d transactions accepted (%d of them again after a crash, same ID), %d refused",
		len(st.accepted()), retried, len(st.refused()))
	if !slices.Equal(order, sent) {
		t.Errorf("alice's messages as delivered to the bridge:\n %q\nwant, in sending order:\n %q", order, sent)
	}
	var relayed []string
	for _, m := range st.RemoteInbox {
		if m.Sender == alice {
			relayed = append(relayed, m.EventID)
		}
	}
	if !slices.Equal(relayed, sent) {
		t.Errorf("alice's messages relayed by the bridge:\n %q\nwant:\n %q", relayed, sent)
	}
	if len(st.Errors) > 0 {
		t.Errorf("the bridge reported errors: %q", st.Errors)
	}
}

// nodeBridge is a running asbridge/bridge.mjs and its control server.
type nodeBridge struct {
	control string // control server base URL
}

// bridgeState is what GET /state of the control server returns.
type bridgeState struct {
	Transactions []bridgeTxn `json:"transactions"`
	RemoteInbox  []struct {
		Channel string `json:"channel"`
		EventID string `json:"event_id"`
		Sender  string `json:"sender"`
		Text    string `json:"text"`
	} `json:"remote_inbox"`
	Ephemeral    []bridgeEphemeral `json:"ephemeral"`
	AliasQueries []string          `json:"alias_queries"`
	UserQueries  []string          `json:"user_queries"`
	Portals      map[string]string `json:"portals"`
	Errors       []string          `json:"errors"`
}

type bridgeEvent struct {
	EventID string `json:"event_id"`
	Type    string `json:"type"`
	RoomID  string `json:"room_id"`
	Sender  string `json:"sender"`
	Body    string `json:"body"`
}

type bridgeEphemeral struct {
	Type    string         `json:"type"`
	RoomID  string         `json:"room_id"`
	Content map[string]any `json:"content"`
}

func eventIDs(evs []bridgeEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.EventID)
	}
	return out
}

// bridgeTxn is one PUT /_matrix/app/v1/transactions/{txnId} as the bridge received it.
type bridgeTxn struct {
	TxnID     string            `json:"txn_id"`
	Auth      bool              `json:"auth"` // Authorization: Bearer <hs_token>
	Keys      []string          `json:"keys"` // the body's keys
	Refused   bool              `json:"refused"`
	Events    []bridgeEvent     `json:"events"`
	Ephemeral []bridgeEphemeral `json:"ephemeral"`
}

func (st bridgeState) accepted() []bridgeTxn {
	var out []bridgeTxn
	for _, tx := range st.Transactions {
		if !tx.Refused {
			out = append(out, tx)
		}
	}
	return out
}

func (st bridgeState) refused() []bridgeTxn {
	var out []bridgeTxn
	for _, tx := range st.Transactions {
		if tx.Refused {
			out = append(out, tx)
		}
	}
	return out
}

// inboxHas reports whether the remote network received all these events.
func (st bridgeState) inboxHas(eventIDs ...string) bool {
	got := map[string]bool{}
	for _, m := range st.RemoteInbox {
		got[m.EventID] = true
	}
	for _, id := range eventIDs {
		if !got[id] {
			return false
		}
	}
	return true
}

// typing reports whether the controller saw an m.typing in room listing user.
func (st bridgeState) typing(room, user string) bool {
	for _, e := range st.Ephemeral {
		if e.Type != "m.typing" || e.RoomID != room {
			continue
		}
		ids, _ := e.Content["user_ids"].([]any)
		for _, id := range ids {
			if id == user {
				return true
			}
		}
	}
	return false
}

// receipt reports whether the controller saw user's m.read receipt for eventID in room.
func (st bridgeState) receipt(room, eventID, user string) bool {
	for _, e := range st.Ephemeral {
		if e.Type != "m.receipt" || e.RoomID != room {
			continue
		}
		ev, _ := e.Content[eventID].(map[string]any)
		read, _ := ev["m.read"].(map[string]any)
		if _, ok := read[user]; ok {
			return true
		}
	}
	return false
}

// startNodeBridge writes the bridge's registration, adds it to srv's app_service_config_files,
// restarts srv so that it loads it, and starts the bridge with node.
func startNodeBridge(t *testing.T, srv *Server, node string) *nodeBridge {
	t.Helper()
	dir := t.TempDir()
	bridgePort, controlPort := freePort(t), freePort(t)
	domain := regexp.QuoteMeta(srv.Name)
	// The registration as matrix-appservice-bridge writes it, plus the spec's name for
	// ephemeral events: the framework reads de.sorunome.msc2409.push_ephemeral (MSC2409).
	reg := fmt.Sprintf(`id: fakenet
url: "http://127.0.0.1:%d"
as_token: %q
hs_token: %q
sender_localpart: remotebot
rate_limited: false
receive_ephemeral: true
de.sorunome.msc2409.push_ephemeral: true
protocols: ["fakenet"]
namespaces:
  users:
    - exclusive: true
      regex: "@remote_.*:%s"
  aliases:
    - exclusive: true
      regex: "#remote_.*:%s"
  rooms: []
`, bridgePort, bridgeToken(t), bridgeToken(t), domain, domain)
	regPath := filepath.Join(dir, "fakenet-registration.yaml")
	if err := os.WriteFile(regPath, []byte(reg), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(srv.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, fmt.Sprintf("\napp_service_config_files:\n  - %q\n", regPath)...)
	if err := os.WriteFile(srv.ConfigPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	srv.Start()

	abs, err := filepath.Abs(asbridgeDir)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, filepath.Join(abs, "bridge.mjs"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"LATTICE_URL="+srv.URL, "BRIDGE_DOMAIN="+srv.Name, "BRIDGE_REGISTRATION="+regPath,
		fmt.Sprintf("BRIDGE_PORT=%d", bridgePort), fmt.Sprintf("CONTROL_PORT=%d", controlPort),
		"BRIDGE_DATA="+dir)
	exited := startLogged(t, cmd, "bridge: ")
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // the node process this test started
		<-exited
	})
	b := &nodeBridge{control: fmt.Sprintf("http://127.0.0.1:%d", controlPort)}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := b.do("GET", "/state", nil); err == nil {
			return b
		}
		select {
		case <-exited:
			t.Fatalf("the bridge exited: %v (its output is above)", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bridge did not start within 60 s (its output is above)")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startLogged starts cmd with its output passed line by line to t.Log; the channel it returns
// is closed once the process has exited and all its output is read.
func startLogged(t *testing.T, cmd *exec.Cmd, prefix string) <-chan struct{} {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	pump := func(r io.Reader, tag string) {
		defer wg.Done()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			t.Log(prefix + tag + strings.TrimRight(sc.Text(), "\r"))
		}
	}
	wg.Add(2)
	go pump(stdout, "")
	go pump(stderr, "stderr: ")
	exited := make(chan struct{})
	go func() {
		wg.Wait() // all output read before Wait closes the pipes
		_ = cmd.Wait()
		close(exited)
	}()
	return exited
}

func (b *nodeBridge) do(method, path string, body any) ([]byte, error) {
	var rdr io.Reader
	if body != nil {
		js, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rdr = bytes.NewReader(js)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, b.control+path, rdr)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return raw, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	return raw, nil
}

// post calls the control server and fails the test unless it answers 200.
func (b *nodeBridge) post(t *testing.T, path string, body any) map[string]any {
	t.Helper()
	raw, err := b.do("POST", path, body)
	if err != nil {
		t.Fatalf("bridge control: %v", err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("bridge control %s: %v (%s)", path, err, raw)
	}
	return out
}

func (b *nodeBridge) state(t *testing.T) bridgeState {
	t.Helper()
	raw, err := b.do("GET", "/state", nil)
	if err != nil {
		t.Fatalf("bridge control: %v", err)
	}
	var st bridgeState
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf("bridge state: %v (%.500s)", err, raw)
	}
	return st
}

// waitState polls the bridge's state until cond holds, failing the test after 60 s.
func (b *nodeBridge) waitState(t *testing.T, what string, cond func(bridgeState) bool) bridgeState {
	t.Helper()
	st, ok := b.pollState(t, 60*time.Second, cond)
	if !ok {
		js, _ := json.MarshalIndent(st, "", " ")
		t.Fatalf("timed out waiting until %s; bridge state:\n%.6000s", what, js)
	}
	return st
}

// expectState polls the bridge's state until cond holds, reporting an error (and going on)
// after limit.
func (b *nodeBridge) expectState(t *testing.T, limit time.Duration, what string, cond func(bridgeState) bool) {
	t.Helper()
	if st, ok := b.pollState(t, limit, cond); !ok {
		keys := map[string]int{}
		for _, tx := range st.Transactions {
			for _, k := range tx.Keys {
				keys[k]++
			}
		}
		js, _ := json.Marshal(st.Transactions[max(0, len(st.Transactions)-3):])
		t.Errorf("not within %v: %s; ephemeral events the bridge saw: %d; transaction body keys seen (the framework "+
			"reads ephemeral events from %q only): %v; its last transactions: %.3000s",
			limit, what, len(st.Ephemeral), "de.sorunome.msc2409.ephemeral", keys, js)
	}
}

func (b *nodeBridge) pollState(t *testing.T, limit time.Duration, cond func(bridgeState) bool) (bridgeState, bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		st := b.state(t)
		if cond(st) {
			return st, true
		}
		if time.Now().After(deadline) {
			return st, false
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func bridgeToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// ensureNPMPackage runs `npm ci` in dir unless its node_modules already holds pkg at version.
func ensureNPMPackage(t *testing.T, npm, dir, pkg, version string) {
	t.Helper()
	installed := func() string {
		b, err := os.ReadFile(filepath.Join(dir, "node_modules", pkg, "package.json"))
		if err != nil {
			return ""
		}
		var p struct {
			Version string `json:"version"`
		}
		_ = json.Unmarshal(b, &p)
		return p.Version
	}
	if installed() == version {
		return
	}
	t.Logf("installing %s/node_modules with npm ci", dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	if err := runStreaming(t, cmd, "npm ci: "); err != nil {
		t.Fatalf("npm ci in e2e/%s: %v", dir, err)
	}
	if v := installed(); v != version {
		t.Fatalf("after npm ci, %s version is %q, want %q", pkg, v, version)
	}
}
