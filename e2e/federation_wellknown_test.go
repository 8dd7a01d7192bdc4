package e2e

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
)

// TestFederationWellKnown: a server named "localhost", with no port, is found through
// https://localhost/.well-known/matrix/server, which delegates to its federation port; the
// lookup goes through the federation TLS settings (the test CA) and is cached, so that one
// lookup serves a join, messages and key fetches. It needs port 443 on loopback (root), and
// is skipped where that port cannot be had.
func TestFederationWellKnown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:443")
	if err != nil {
		t.Skipf("port 443 on loopback is not available here: %v", err)
	}
	ca := newTestCA(t)
	fedAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	_, port, _ := net.SplitHostPort(fedAddr)

	certPEM, keyPEM := ca.issue(t)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	var lookups atomic.Int32
	wk := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/matrix/server" {
			http.NotFound(w, r)
			return
		}
		lookups.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"m.server": "localhost:%s"}`, port)
	})}
	go wk.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}}))
	t.Cleanup(func() { wk.Close() })

	a := StartServer(t, WithServerName("localhost"), WithFederation(fedAddr))
	a.Stop()
	useTestCA(t, a, ca)
	a.Start()
	b := startFederatedServer(t, ca)

	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat", "room_alias_name": "wk"})
	if r := call(bob, "POST", "/_matrix/client/v3/join/"+esc("#wk:localhost"), map[string]any{}); r.Status != 200 || str(r.Body, "room_id") != roomID {
		t.Fatalf("bob joining #wk:localhost through the delegation: %d %s", r.Status, r.Raw)
	}
	bobs := newSyncer(bob, "")
	bobs.once(0)
	for i := range 3 {
		id := say(alice, roomID, fmt.Sprintf("hello %d", i))
		bobs.waitEvent(roomID, id)
	}
	// bob's answer travels from B to localhost through the (cached) delegation.
	alices := newSyncer(alice, "")
	alices.once(0)
	alices.waitEvent(roomID, say(bob, roomID, "back"))
	if n := lookups.Load(); n != 1 {
		t.Fatalf("B looked up localhost's .well-known %d times, want once (cached)", n)
	}
}
