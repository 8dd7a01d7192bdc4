package e2e

// Harness for the multi-server federation tests (federation3_test.go): Lattice servers behind
// partitionable TCP proxies, a fake homeserver played by the test, and client helpers that
// wait for federation to deliver.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// fedProxy forwards raw TCP bytes (so TLS passes through untouched) from its own loopback
// address to a server's real federation listener. Partitioned, it closes every connection it
// holds and every new one as soon as it is accepted, so that nobody can reach the server
// behind it; healed, it forwards again.
type fedProxy struct {
	ln     net.Listener
	target string

	mu          sync.Mutex
	partitioned bool
	conns       map[net.Conn]struct{} // both ends of every forwarded connection; guarded by mu
	forwarded   atomic.Int64          // connections forwarded so far
	refused     atomic.Int64          // connections closed on accept while partitioned
}

// startFedProxy listens on 127.0.0.1 on a free port; the target is set with setTarget before
// the first connection matters (the server's name must be known before it starts).
func startFedProxy(t *testing.T) *fedProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &fedProxy{ln: ln, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's address, which is also the server name of the server behind it.
func (p *fedProxy) Addr() string { return p.ln.Addr().String() }

func (p *fedProxy) setTarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
}

func (p *fedProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.partitioned {
			p.mu.Unlock()
			p.refused.Add(1)
			c.Close()
			continue
		}
		target := p.target
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		go p.forward(c, target)
	}
}

// forward copies bytes both ways between c and a new connection to target until either side
// ends, then closes both.
func (p *fedProxy) forward(c net.Conn, target string) {
	defer p.drop(c)
	up, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer p.drop(up)
	p.mu.Lock()
	if p.partitioned { // partitioned while dialing
		p.mu.Unlock()
		return
	}
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	p.forwarded.Add(1)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}

func (p *fedProxy) drop(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// Partition cuts the server off: open connections are closed, new ones closed on accept.
func (p *fedProxy) Partition() {
	p.mu.Lock()
	p.partitioned = true
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// Heal forwards new connections again.
func (p *fedProxy) Heal() {
	p.mu.Lock()
	p.partitioned = false
	p.mu.Unlock()
}

func (p *fedProxy) close() {
	p.ln.Close()
	p.Partition()
}

// fedNode is a Lattice server whose server name is the address of a fedProxy in front of its
// real federation listener (FedAddr).
type fedNode struct {
	*Server
	Proxy   *fedProxy
	FedAddr string
}

// startProxiedServer starts a Lattice server behind a new proxy (see startServerBehind).
func startProxiedServer(t *testing.T, ca *testCA) *fedNode {
	t.Helper()
	return startServerBehind(t, ca, startFedProxy(t))
}

// startServerBehind starts a Lattice server named after proxy p's address, with its
// federation listener on another loopback port behind p, serving a certificate from ca (IP
// SAN 127.0.0.1, so valid for both addresses) and trusting ca for outbound federation. The
// caller makes the proxies first, so that it can choose which server gets which name.
func startServerBehind(t *testing.T, ca *testCA, p *fedProxy) *fedNode {
	t.Helper()
	fedAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p.setTarget(fedAddr)
	s := StartServer(t, WithServerName(p.Addr()), WithFederation(fedAddr))
	s.Stop()
	useTestCA(t, s, ca)
	s.Start()
	n := &fedNode{Server: s, Proxy: p, FedAddr: fedAddr}
	// Registered after StartServer's cleanup, so it runs first: a stopped process would not
	// see Stop's SIGTERM, and a partitioned one would keep its peers' senders failing.
	t.Cleanup(func() {
		n.Proxy.Heal()
		n.Cont()
	})
	return n
}

// useTestCA gives s's federation listener a certificate from ca and makes it trust ca for
// outbound federation, by editing its configuration (the TLS settings are not
// generate-config flags). s must be stopped; the caller starts it.
func useTestCA(t testing.TB, s *Server, ca *testCA) {
	t.Helper()
	certPEM, keyPEM := ca.issue(t)
	if err := os.WriteFile(filepath.Join(s.DataDir, "fed.crt"), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.DataDir, "fed.key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(s.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.NewReplacer(`tls_cert: ""`, `tls_cert: "fed.crt"`, `tls_key: ""`, `tls_key: "fed.key"`,
		`tls_ca: ""`, `tls_ca: "`+ca.pemPath+`"`,
		// The federation tests join with partial state (a preview, off by default).
		`partial_state_joins: false`, `partial_state_joins: true`).Replace(string(cfg))
	if edited == string(cfg) || !strings.Contains(edited, s.Name) {
		t.Fatalf("configuration not as expected:\n%s", cfg)
	}
	if err := os.WriteFile(s.ConfigPath, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
}

// pid is the server process's ID (0 when it is not running).
func (n *fedNode) pid() int {
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Freeze stops the process with SIGSTOP: its sockets stay open but nothing answers.
func (n *fedNode) Freeze(t *testing.T) {
	t.Helper()
	if pid := n.pid(); pid == 0 {
		t.Fatalf("%s is not running", n.Name)
	} else if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %d: %v", pid, err)
	}
}

// Cont resumes a process stopped by Freeze (harmless on a running one).
func (n *fedNode) Cont() {
	if pid := n.pid(); pid != 0 {
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
}

// fedHTTPClient is an HTTPS client trusting only ca, without keep-alive so that every
// request opens a new connection through the proxies.
func fedHTTPClient(ca *testCA) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ca.pool},
		DisableKeepAlives: true,
	}}
}

// fedVersion fetches GET /_matrix/federation/v1/version from https://name and checks that
// Lattice answered.
func fedVersion(client *http.Client, name string) error {
	resp, err := client.Get("https://" + name + "/_matrix/federation/v1/version")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var v struct {
		Server struct{ Name string } `json:"server"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &v) != nil || v.Server.Name != "Lattice" {
		return fmt.Errorf("status %d, body %s", resp.StatusCode, body)
	}
	return nil
}

// --- client helpers ---

// bigTimeline is a /sync filter whose timeline limit exceeds every batch the tests send, so
// that a sync between two batches is never limited.
const bigTimeline = `{"room":{"timeline":{"limit":400}}}`

// rebind returns c acting for the (sub)test t: Client.t must be the test whose goroutine
// calls Fatal. The copy shares nothing mutable with c; send messages with say, whose
// transaction IDs are unique across copies.
func rebind(c *Client, t *testing.T) *Client {
	return &Client{t: t, srv: c.srv, UserID: c.UserID, DeviceID: c.DeviceID, Token: c.Token}
}

// rebindSyncer returns s for the (sub)test t, keeping its position and what it has seen.
func rebindSyncer(s *syncer, t *testing.T) *syncer {
	return &syncer{c: rebind(s.c, t), filter: s.filter, since: s.since, seen: s.seen, tl: s.tl, last: s.last}
}

// txnSeq makes say's transaction IDs unique within the process; the start time makes them
// unique across runs against the same data directory.
var txnSeq atomic.Int64

func nextTxnID() string { return fmt.Sprintf("fed3-%d-%d", time.Now().UnixNano(), txnSeq.Add(1)) }

// trySay sends an m.text message and returns its event ID, or an error instead of failing
// (for goroutines).
func trySay(c *Client, roomID, text string) (string, error) {
	path := fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/%s", esc(roomID), nextTxnID())
	js, _ := json.Marshal(map[string]any{"msgtype": "m.text", "body": text})
	r, err := rawDo(c.srv, c.Token, "PUT", path, js)
	if err != nil {
		return "", err
	}
	if r.Status != 200 || str(r.Body, "event_id") == "" {
		return "", fmt.Errorf("%s sending %q: %d %s", c.UserID, text, r.Status, r.Raw)
	}
	return str(r.Body, "event_id"), nil
}

// say sends an m.text message and fails the test unless it was accepted.
func say(c *Client, roomID, text string) string {
	c.t.Helper()
	id, err := trySay(c, roomID, text)
	if err != nil {
		c.t.Fatal(err)
	}
	return id
}

// joinRoom sends POST /join/{roomIdOrAlias} with ?via= for each of via and returns the
// response (no failure on its own).
func joinRoom(c *Client, roomIDOrAlias string, via ...string) Resp {
	c.t.Helper()
	q := url.Values{}
	for _, v := range via {
		q.Add("via", v)
	}
	path := "/_matrix/client/v3/join/" + esc(roomIDOrAlias)
	if len(via) > 0 {
		path += "?" + q.Encode()
	}
	return call(c, "POST", path, map[string]any{})
}

// poll calls check every interval until it reports done or timeout passes; it returns the
// last state description check gave and whether it finished.
func poll(timeout, interval time.Duration, check func() (done bool, state string)) (bool, string) {
	deadline := time.Now().Add(timeout)
	for {
		done, state := check()
		if done {
			return true, state
		}
		if time.Now().After(deadline) {
			return false, state
		}
		time.Sleep(interval)
	}
}

// syncUntilSeen syncs until every event of want is in the syncer's timelines or timeout
// passes; it returns the IDs still missing. Limited timelines are logged: with bigTimeline
// they mean the server dropped events from /sync.
func syncUntilSeen(t *testing.T, s *syncer, want []string, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 0
	for {
		missing := missingIDs(s, want)
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return missing
		}
		r := s.once(wait)
		for roomID, v := range obj(r.Body, "rooms", "join") {
			room, _ := v.(map[string]any)
			if lim, _ := obj(room, "timeline")["limited"].(bool); lim && s.since != "" {
				t.Logf("%s: /sync timeline of %s limited (prev_batch %q) although the filter allows 400 events",
					s.c.UserID, roomID, str(obj(room, "timeline"), "prev_batch"))
			}
		}
		wait = 2000
	}
}

func missingIDs(s *syncer, want []string) []string {
	var missing []string
	for _, id := range want {
		if !s.seen[id] {
			missing = append(missing, id)
		}
	}
	return missing
}

// roomState returns GET /rooms/{roomId}/state as a map "type|state_key" -> event, or the
// error response.
func roomState(c *Client, roomID string) (map[string]event, Resp) {
	c.t.Helper()
	r := call(c, "GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state", nil)
	if r.Status != 200 {
		return nil, r
	}
	var evs []event
	if err := json.Unmarshal(r.Raw, &evs); err != nil {
		c.t.Fatalf("GET state of %s: not a list of events: %.300s", roomID, r.Raw)
	}
	m := map[string]event{}
	for _, e := range evs {
		m[evType(e)+"|"+str(e, "state_key")] = e
	}
	return m, r
}

// stateDiff describes how two state maps differ by event ID ("" when equal).
func stateDiff(x, y map[string]event) string {
	keys := map[string]bool{}
	for k := range x {
		keys[k] = true
	}
	for k := range y {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var out []string
	for _, k := range sorted {
		if evID(x[k]) != evID(y[k]) {
			out = append(out, fmt.Sprintf("%s: %q vs %q", k, evID(x[k]), evID(y[k])))
		}
	}
	return strings.Join(out, "; ")
}

// joinedMembers returns the user IDs of GET /rooms/{roomId}/joined_members.
func joinedMembers(c *Client, roomID string) (map[string]bool, Resp) {
	c.t.Helper()
	r := call(c, "GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/joined_members", nil)
	out := map[string]bool{}
	for u := range obj(r.Body, "joined") {
		out[u] = true
	}
	return out, r
}

// history pages /messages?dir=b from the newest event back to the room's beginning (or
// until the server has nothing more) and returns the events oldest first.
func history(c *Client, roomID string, pageSize int) []event {
	c.t.Helper()
	return reversed(paginateBack(c, roomID, "", pageSize, nil))
}

// --- a fake homeserver played by the test ---

// fakeHomeserver is a homeserver played by the test with gomatrixserverlib: a TLS server
// (certificate from the test CA) that serves its signing key, accepts the transactions it is
// sent (recording their PDUs) and answers everything else 404; and a client that signs
// requests as that server.
type fakeHomeserver struct {
	name   spec.ServerName
	keyID  gomatrixserverlib.KeyID
	priv   ed25519.PrivateKey
	client *http.Client

	mu       sync.Mutex
	received []json.RawMessage // PDUs received in transactions; guarded by mu
	requests []string          // "METHOD /path?query" of every request served, in order; guarded by mu
	// extra, when set (setExtra), sees every request first and reports whether it answered
	// it; the default answers apply to the rest. Guarded by mu.
	extra func(w http.ResponseWriter, r *http.Request) bool
}

// setExtra installs h as the first handler of every request (see fakeHomeserver.extra).
func (f *fakeHomeserver) setExtra(h func(w http.ResponseWriter, r *http.Request) bool) {
	f.mu.Lock()
	f.extra = h
	f.mu.Unlock()
}

// requestsLike returns the recorded requests whose "METHOD /path?query" contains substr.
func (f *fakeHomeserver) requestsLike(substr string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.requests {
		if strings.Contains(r, substr) {
			out = append(out, r)
		}
	}
	return out
}

func startFakeHomeserver(t *testing.T, ca *testCA) *fakeHomeserver {
	t.Helper()
	return startFakeHomeserverOn(t, ca, "127.0.0.1")
}

// startFakeHomeserverOn starts a fake homeserver listening on host (a loopback address the
// test CA's certificates cover), which is the host of its server name.
func startFakeHomeserverOn(t *testing.T, ca *testCA, host string) *fakeHomeserver {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	f := &fakeHomeserver{keyID: "ed25519:fake3", priv: priv, client: &http.Client{Timeout: 60 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(f.serveHTTP))
	if host != "127.0.0.1" {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatalf("listening on %s: %v", host, err)
		}
		srv.Listener.Close()
		srv.Listener = ln
	}
	certPEM, keyPEM := ca.issue(t)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	f.name = spec.ServerName(srv.Listener.Addr().String())
	return f
}

func (f *fakeHomeserver) serveHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	extra := f.extra
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if extra != nil && extra(w, r) {
		return
	}
	switch {
	case r.URL.Path == "/_matrix/key/v2/server":
		js, _ := json.Marshal(gomatrixserverlib.ServerKeyFields{
			ServerName:    f.name,
			VerifyKeys:    map[gomatrixserverlib.KeyID]gomatrixserverlib.VerifyKey{f.keyID: {Key: spec.Base64Bytes(f.priv.Public().(ed25519.PublicKey))}},
			OldVerifyKeys: map[gomatrixserverlib.KeyID]gomatrixserverlib.OldVerifyKey{},
			ValidUntilTS:  spec.AsTimestamp(time.Now().Add(time.Hour)),
		})
		signed, _ := gomatrixserverlib.SignJSON(string(f.name), f.keyID, f.priv, js)
		w.Write(signed)
	case r.Method == "PUT" && strings.HasPrefix(r.URL.Path, "/_matrix/federation/v1/send/"):
		var txn struct {
			PDUs []json.RawMessage `json:"pdus"`
		}
		_ = json.NewDecoder(r.Body).Decode(&txn)
		f.mu.Lock()
		f.received = append(f.received, txn.PDUs...)
		f.mu.Unlock()
		w.Write([]byte(`{"pdus":{}}`))
	case r.URL.Path == "/_matrix/federation/v1/version":
		w.Write([]byte(`{"server":{"name":"fake","version":"0"}}`))
	default:
		w.WriteHeader(404)
		w.Write([]byte(`{"errcode":"M_NOT_FOUND","error":"the fake server has nothing here"}`))
	}
}

// fedResp is a federation response.
type fedResp struct {
	Status int
	Raw    []byte
	Body   map[string]any
}

// request sends a federation request to dest, signed as f for destination signDest (dest when
// empty) with key (f's own when nil); noAuth leaves out the Authorization header.
func (f *fakeHomeserver) request(t *testing.T, method string, dest spec.ServerName, requestURI string, content any, opts ...fakeReqOpt) fedResp {
	t.Helper()
	o := fakeReq{signDest: dest, key: f.priv}
	for _, opt := range opts {
		opt(&o)
	}
	fr := fclient.NewFederationRequest(method, f.name, o.signDest, requestURI)
	if content != nil {
		if err := fr.SetContent(content); err != nil {
			t.Fatal(err)
		}
	}
	if err := fr.Sign(f.name, f.keyID, o.key); err != nil {
		t.Fatal(err)
	}
	req, err := fr.HTTPRequest()
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Scheme, req.URL.Host, req.Host = "https", string(dest), string(dest)
	if o.noAuth {
		req.Header.Del("Authorization")
	}
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, requestURI, dest, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := fedResp{Status: resp.StatusCode, Raw: raw}
	_ = json.Unmarshal(raw, &out.Body)
	return out
}

type fakeReq struct {
	signDest spec.ServerName
	key      ed25519.PrivateKey
	noAuth   bool
}

type fakeReqOpt func(*fakeReq)

func signedFor(dest spec.ServerName) fakeReqOpt { return func(o *fakeReq) { o.signDest = dest } }
func signedWith(key ed25519.PrivateKey) fakeReqOpt {
	return func(o *fakeReq) { o.key = key }
}
func withoutAuth() fakeReqOpt { return func(o *fakeReq) { o.noAuth = true } }

// fakeRoom is what the fake server knows of a room it joined: the room version, the current
// state (from send_join) and the newest event it knows of.
type fakeRoom struct {
	roomID string
	ver    gomatrixserverlib.IRoomVersion
	state  map[string]gomatrixserverlib.PDU // "type|state_key" -> event
	latest gomatrixserverlib.PDU
	// template is the make_join answer's event; answered the send_join answer's "event" (the
	// join as the resident server accepted it, with its signature), when it had one.
	template gomatrixserverlib.ProtoEvent
	answered json.RawMessage
}

// join makes userID (a user of f) join roomID through dest with make_join and send_join v2,
// building and signing the join event from the make_join template.
func (f *fakeHomeserver) join(t *testing.T, dest spec.ServerName, roomID, userID string) (*fakeRoom, error) {
	t.Helper()
	return f.joinVersion(t, dest, roomID, userID, "v2")
}

// joinVersion is join with send_join of the given version: "v2", or "v1", whose answer is
// the pair [200, body] of the deprecated endpoint.
func (f *fakeHomeserver) joinVersion(t *testing.T, dest spec.ServerName, roomID, userID, sendJoinVersion string) (*fakeRoom, error) {
	t.Helper()
	q := url.Values{}
	for v := range gomatrixserverlib.StableRoomVersions() {
		q.Add("ver", string(v))
	}
	mj := f.request(t, "GET", dest, "/_matrix/federation/v1/make_join/"+url.PathEscape(roomID)+"/"+url.PathEscape(userID)+"?"+q.Encode(), nil)
	if mj.Status != 200 {
		return nil, fmt.Errorf("make_join: %d %s", mj.Status, mj.Raw)
	}
	var tmpl struct {
		RoomVersion gomatrixserverlib.RoomVersion `json:"room_version"`
		Event       gomatrixserverlib.ProtoEvent  `json:"event"`
	}
	if err := json.Unmarshal(mj.Raw, &tmpl); err != nil {
		return nil, fmt.Errorf("make_join response %s: %v", mj.Raw, err)
	}
	ver, err := gomatrixserverlib.GetRoomVersion(tmpl.RoomVersion)
	if err != nil {
		return nil, fmt.Errorf("make_join room_version %q: %v (response %s)", tmpl.RoomVersion, err, mj.Raw)
	}
	// joins-v1.yaml: the caller must check the template before signing it.
	var content struct {
		Membership string `json:"membership"`
	}
	_ = json.Unmarshal(tmpl.Event.Content, &content)
	if tmpl.Event.RoomID != roomID || tmpl.Event.SenderID != userID || tmpl.Event.StateKey == nil ||
		*tmpl.Event.StateKey != userID || tmpl.Event.Type != "m.room.member" || content.Membership != "join" {
		return nil, fmt.Errorf("make_join template fails the spec's checks: %s", mj.Raw)
	}
	joinEv, err := ver.NewEventBuilderFromProtoEvent(&tmpl.Event).Build(time.Now(), f.name, f.keyID, f.priv)
	if err != nil {
		return nil, fmt.Errorf("building the join from template %s: %v", mj.Raw, err)
	}
	sj := f.request(t, "PUT", dest, "/_matrix/federation/"+sendJoinVersion+"/send_join/"+url.PathEscape(roomID)+"/"+url.PathEscape(joinEv.EventID()), json.RawMessage(joinEv.JSON()))
	if sj.Status != 200 {
		return nil, fmt.Errorf("send_join: %d %s", sj.Status, sj.Raw)
	}
	body := sj.Raw
	if sendJoinVersion == "v1" {
		var pair []json.RawMessage
		if err := json.Unmarshal(sj.Raw, &pair); err != nil || len(pair) != 2 || string(pair[0]) != "200" {
			return nil, fmt.Errorf("send_join v1 answer is not [200, {...}]: %.500s", sj.Raw)
		}
		body = pair[1]
	}
	var resp struct {
		State     []json.RawMessage `json:"state"`
		AuthChain []json.RawMessage `json:"auth_chain"`
		Event     json.RawMessage   `json:"event"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("send_join response %.500s: %v", sj.Raw, err)
	}
	room := &fakeRoom{roomID: roomID, ver: ver, state: map[string]gomatrixserverlib.PDU{}, latest: joinEv,
		template: tmpl.Event, answered: resp.Event}
	for _, raw := range resp.State {
		ev, err := ver.NewEventFromUntrustedJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("send_join state event %s: %v", raw, err)
		}
		room.state[ev.Type()+"|"+*ev.StateKey()] = ev
	}
	if _, ok := room.state["m.room.create|"]; !ok {
		return nil, fmt.Errorf("send_join state has no m.room.create: %.1000s", sj.Raw)
	}
	room.state["m.room.member|"+userID] = joinEv
	return room, nil
}

// leave makes userID (a user of f) leave roomID through dest with make_leave and send_leave
// of the given version ("v1" or "v2"), and returns the send_leave response.
func (f *fakeHomeserver) leave(t *testing.T, dest spec.ServerName, roomID, userID, sendLeaveVersion string) (fedResp, error) {
	t.Helper()
	ml := f.request(t, "GET", dest, "/_matrix/federation/v1/make_leave/"+url.PathEscape(roomID)+"/"+url.PathEscape(userID), nil)
	if ml.Status != 200 {
		return ml, fmt.Errorf("make_leave: %d %s", ml.Status, ml.Raw)
	}
	var tmpl struct {
		RoomVersion gomatrixserverlib.RoomVersion `json:"room_version"`
		Event       gomatrixserverlib.ProtoEvent  `json:"event"`
	}
	if err := json.Unmarshal(ml.Raw, &tmpl); err != nil {
		return ml, fmt.Errorf("make_leave response %s: %v", ml.Raw, err)
	}
	ver, err := gomatrixserverlib.GetRoomVersion(tmpl.RoomVersion)
	if err != nil {
		return ml, fmt.Errorf("make_leave room_version %q: %v", tmpl.RoomVersion, err)
	}
	ev, err := ver.NewEventBuilderFromProtoEvent(&tmpl.Event).Build(time.Now(), f.name, f.keyID, f.priv)
	if err != nil {
		return ml, fmt.Errorf("building the leave from template %s: %v", ml.Raw, err)
	}
	sl := f.request(t, "PUT", dest, "/_matrix/federation/"+sendLeaveVersion+"/send_leave/"+url.PathEscape(roomID)+"/"+url.PathEscape(ev.EventID()), json.RawMessage(ev.JSON()))
	if sl.Status != 200 {
		return sl, fmt.Errorf("send_leave: %d %s", sl.Status, sl.Raw)
	}
	return sl, nil
}

// build makes an event of the fake server in room, after room.latest, with auth events
// chosen from room.state, signed with key (f's own when nil). It does not change room.
func (f *fakeHomeserver) build(t *testing.T, room *fakeRoom, sender, evType string, stateKey *string, content any, key ed25519.PrivateKey) gomatrixserverlib.PDU {
	t.Helper()
	js, err := json.Marshal(content)
	if err != nil {
		t.Fatal(err)
	}
	b := room.ver.NewEventBuilderFromProtoEvent(&gomatrixserverlib.ProtoEvent{
		SenderID: sender, RoomID: room.roomID, Type: evType, StateKey: stateKey,
		PrevEvents: []string{room.latest.EventID()}, Depth: room.latest.Depth() + 1, Content: js,
	})
	var evs []gomatrixserverlib.PDU
	for _, ev := range room.state {
		evs = append(evs, ev)
	}
	provider, err := gomatrixserverlib.NewAuthEvents(evs)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddAuthEvents(provider); err != nil {
		t.Fatal(err)
	}
	if key == nil {
		key = f.priv
	}
	ev, err := b.Build(time.Now(), f.name, f.keyID, key)
	if err != nil {
		t.Fatalf("building %s event: %v", evType, err)
	}
	return ev
}

// sendPDUs sends one transaction with the given PDUs to dest and returns the response.
func (f *fakeHomeserver) sendPDUs(t *testing.T, dest spec.ServerName, pdus []json.RawMessage, opts ...fakeReqOpt) fedResp {
	t.Helper()
	return f.sendTxn(t, dest, pdus, nil, opts...)
}

// sendTxn sends one transaction with the given PDUs and EDUs to dest and returns the response.
func (f *fakeHomeserver) sendTxn(t *testing.T, dest spec.ServerName, pdus []json.RawMessage, edus []gomatrixserverlib.EDU, opts ...fakeReqOpt) fedResp {
	t.Helper()
	if pdus == nil {
		pdus = []json.RawMessage{}
	}
	txn := map[string]any{"origin": f.name, "origin_server_ts": time.Now().UnixMilli(), "pdus": pdus}
	if len(edus) > 0 {
		txn["edus"] = edus
	}
	return f.request(t, "PUT", dest, "/_matrix/federation/v1/send/"+nextTxnID(), txn, opts...)
}

// pduResult returns the "pdus" entry of a /send response for eventID and whether it is there.
func pduResult(r fedResp, eventID string) (map[string]any, bool) {
	res, ok := obj(r.Body, "pdus")[eventID].(map[string]any)
	return res, ok
}

// withContent returns ev's JSON with its content replaced, everything else (hashes,
// signatures) kept: the content hash no longer matches.
func withContent(t *testing.T, ev gomatrixserverlib.PDU, content any) json.RawMessage {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(ev.JSON()))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	m["content"] = content
	js, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// dialThrough opens a TLS connection through a proxy and returns it once the handshake is
// done, for checking that a partition closes open connections.
func dialThrough(ctx context.Context, ca *testCA, addr string) (*tls.Conn, error) {
	d := tls.Dialer{Config: &tls.Config{RootCAs: ca.pool, ServerName: "127.0.0.1"}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}
