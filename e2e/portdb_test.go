package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestPortDB moves a SQLite deployment to PostgreSQL with `lattice port-db`: access tokens,
// passwords, history, since-tokens, account data and filters all survive the move.
func TestPortDB(t *testing.T) {
	if os.Getenv("LATTICE_E2E_BACKEND") == "postgres" {
		t.Skip("port-db needs a SQLite source; this run starts servers on PostgreSQL")
	}
	target := storagetest.NewPostgresDatabase(t)
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "moving house"})
	join(bob, roomID)
	var sent []string
	for i := range 30 {
		sender := alice
		if i%3 == 2 {
			sender = bob
		}
		sent = append(sent, sender.Send(roomID, fmt.Sprintf("message %d", i)))
	}
	settings := "/_matrix/client/v3/user/" + esc(alice.UserID) + "/account_data/org.example.settings"
	expectOK(t, call(alice, "PUT", settings, map[string]any{"theme": "dark"}), "set account data")
	fr := call(bob, "POST", "/_matrix/client/v3/user/"+esc(bob.UserID)+"/filter", map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 2}}})
	expectOK(t, fr, "create filter")
	filterID := str(fr.Body, "filter_id")
	bobSync := newSyncer(bob, "")
	bobSync.once(0)
	bobSync.waitEvent(roomID, sent[len(sent)-1])
	since := bobSync.since
	history := ids(reversed(paginateBack(alice, roomID, "", 10, nil)))
	if len(history) < len(sent) {
		t.Fatalf("history before the port has %d events, fewer than the %d messages sent", len(history), len(sent))
	}

	srv.Stop()
	portDB := func() ([]byte, error) {
		return exec.Command(binary, "port-db", "--from", filepath.Join(srv.DataDir, "lattice.db"), "--to", target).CombinedOutput()
	}
	out, err := portDB()
	if err != nil {
		t.Fatalf("port-db: %v\n%s", err, out)
	}
	for _, want := range []string{"events: ", "Verified row counts", "Ported "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("port-db output lacks %q:\n%s", want, out)
		}
	}
	useDatabase(t, srv, target)
	srv.Start()

	for _, c := range []*Client{alice, bob} {
		r := whoami(c)
		expectOK(t, r, c.UserID+" whoami with a token from before the port")
		if str(r.Body, "user_id") != c.UserID || str(r.Body, "device_id") != c.DeviceID {
			t.Errorf("whoami after the port: %s, want %s %s", r.Raw, c.UserID, c.DeviceID)
		}
	}
	checkSameIDs(t, "/messages after the port", ids(reversed(paginateBack(alice, roomID, "", 10, nil))), history)

	// The since-token from before the port still holds: an incremental sync returns exactly
	// what happened after it, including account data written after the port.
	after := alice.Send(roomID, "after the port")
	bobAccountData := "/_matrix/client/v3/user/" + esc(bob.UserID) + "/account_data/org.example.after"
	expectOK(t, call(bob, "PUT", bobAccountData, map[string]any{"n": 1}), "set account data after the port")
	resumed := newSyncer(bob, "")
	resumed.since = since
	gotAccountData := false
	resumed.until("the message and account data sent after the port", func(r Resp) bool {
		gotAccountData = gotAccountData || hasAccountData(r, "org.example.after")
		return gotAccountData && resumed.seen[after]
	})
	checkSameIDs(t, "timeline of a sync from the pre-port token", ids(resumed.tl[roomID]), []string{after})

	r := call(alice, "GET", settings, nil)
	expectOK(t, r, "get account data after the port")
	if str(r.Body, "theme") != "dark" {
		t.Errorf("account data after the port: %s", r.Raw)
	}
	r = call(bob, "GET", "/_matrix/client/v3/user/"+esc(bob.UserID)+"/filter/"+esc(filterID), nil)
	expectOK(t, r, "get filter after the port")
	if limit := obj(r.Body, "room", "timeline")["limit"]; limit != float64(2) {
		t.Errorf("filter after the port: %s", r.Raw)
	}
	a2 := srv.Login(t, "alice")
	expectOK(t, whoami(a2), "whoami of a device logged in with the password after the port")

	// The target now holds a deployment: a second port into it is refused.
	out, err = portDB()
	if err == nil {
		t.Errorf("port-db into a non-empty database succeeded:\n%s", out)
	} else if !strings.Contains(string(out), "not empty") {
		t.Errorf("port-db into a non-empty database: %v, output %q, want a 'not empty' reason", err, out)
	}
}

// useDatabase points the server's configuration at another database.
func useDatabase(t *testing.T, srv *Server, url string) {
	t.Helper()
	cfg, err := os.ReadFile(srv.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	const sqliteLine = `  url: "sqlite:lattice.db"`
	if !strings.Contains(string(cfg), sqliteLine) {
		t.Fatalf("config has no line %q", sqliteLine)
	}
	cfg = []byte(strings.Replace(string(cfg), sqliteLine, fmt.Sprintf("  url: %q", url), 1))
	if err := os.WriteFile(srv.ConfigPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
}

// hasAccountData reports whether a /sync response carries global account data of type typ.
func hasAccountData(r Resp, typ string) bool {
	for _, e := range list(obj(r.Body, "account_data"), "events") {
		if evType(e) == typ {
			return true
		}
	}
	return false
}
