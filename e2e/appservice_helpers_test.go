package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAS is an application service played by the test: an HTTP server on loopback that
// records every request Lattice makes to it, answers transactions as a real service would
// (a repeated transaction ID is a no-op), and can be told to fail.
type fakeAS struct {
	t       *testing.T
	srv     *httptest.Server
	ID      string
	ASToken string
	HSToken string

	mu       sync.Mutex
	attempts []txnAttempt            // every transaction request, in arrival order
	bodies   map[string][]byte       // first body seen for each transaction ID
	accepted []string                // transaction IDs answered 2xx for the first time, in order
	events   []map[string]any        // the events of accepted transactions, in order
	eph      []map[string]any        // their ephemeral data, in order
	fail     func(attempt int) int   // status for the nth transaction request (from 1); 0: 200
	extra    map[string]http.Handler // other paths (queries, ping, third party)
	requests []*http.Request         // every non-transaction request
	reqBody  map[*http.Request][]byte
}

type txnAttempt struct {
	TxnID  string
	Auth   string
	Method string
	Body   []byte
	Status int
}

func newFakeAS(t *testing.T, id string) *fakeAS {
	a := &fakeAS{t: t, ID: id, ASToken: "as_" + id + "_secret", HSToken: "hs_" + id + "_secret",
		bodies: map[string][]byte{}, extra: map[string]http.Handler{}, reqBody: map[*http.Request][]byte{}}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeAS) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if txnID, ok := strings.CutPrefix(r.URL.Path, "/_matrix/app/v1/transactions/"); ok {
		a.transaction(w, r, txnID, body)
		return
	}
	a.mu.Lock()
	a.requests = append(a.requests, r)
	a.reqBody[r] = body
	h := a.extra[r.URL.Path]
	a.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+a.HSToken {
		w.WriteHeader(403)
		_, _ = w.Write([]byte(`{"errcode":"M_FORBIDDEN"}`))
		return
	}
	if h == nil {
		w.WriteHeader(404)
		_, _ = w.Write([]byte(`{"errcode":"M_UNRECOGNIZED"}`))
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	h.ServeHTTP(w, r)
}

func (a *fakeAS) transaction(w http.ResponseWriter, r *http.Request, txnID string, body []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	status := 200
	if a.fail != nil {
		if s := a.fail(len(a.attempts) + 1); s != 0 {
			status = s
		}
	}
	a.attempts = append(a.attempts, txnAttempt{TxnID: txnID, Auth: r.Header.Get("Authorization"), Method: r.Method, Body: body, Status: status})
	// A retry carries the same events; only their unsigned.age, computed at each attempt,
	// may differ.
	if first, seen := a.bodies[txnID]; seen && withoutAge(a.t, first) != withoutAge(a.t, body) {
		a.t.Errorf("transaction %s sent again with a different body:\n%s\nthen\n%s", txnID, first, body)
	} else if !seen {
		a.bodies[txnID] = body
	}
	if status == 200 && !contains(a.accepted, txnID) {
		var txn struct {
			Events   []map[string]any `json:"events"`
			Eph      []map[string]any `json:"ephemeral"`
			Unstable []map[string]any `json:"de.sorunome.msc2409.ephemeral"`
		}
		if err := json.Unmarshal(body, &txn); err != nil {
			a.t.Errorf("transaction %s: %v", txnID, err)
		}
		a.accepted = append(a.accepted, txnID)
		a.events = append(a.events, txn.Events...)
		a.eph = append(a.eph, txn.Eph...)
		if len(txn.Eph) != len(txn.Unstable) {
			a.t.Errorf("transaction %s: ephemeral and de.sorunome.msc2409.ephemeral differ: %s", txnID, body)
		}
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte("{}"))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// handle serves path with fn.
func (a *fakeAS) handle(path string, fn http.HandlerFunc) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.extra[path] = fn
}

func (a *fakeAS) setFail(fn func(attempt int) int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fail = fn
}

// delivered returns a copy of the events of accepted transactions.
func (a *fakeAS) delivered() []map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]map[string]any(nil), a.events...)
}

func (a *fakeAS) txnAttempts() []txnAttempt {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]txnAttempt(nil), a.attempts...)
}

// waitEphemeral waits until the service has accepted ephemeral data matching cond.
func (a *fakeAS) waitEphemeral(what string, cond func(map[string]any) bool) {
	a.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		a.mu.Lock()
		eph := append([]map[string]any(nil), a.eph...)
		a.mu.Unlock()
		for _, e := range eph {
			if cond(e) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.t.Errorf("%s: not delivered", what)
}

// waitEvents waits until the service has accepted events matching cond, and returns all.
func (a *fakeAS) waitEvents(what string, timeout time.Duration, cond func([]map[string]any) bool) []map[string]any {
	a.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		evs := a.delivered()
		if cond(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("%s: not delivered within %s (%d events delivered)", what, timeout, len(evs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hasEvent reports whether evs holds the event ID.
func hasEvent(evs []map[string]any, eventID string) bool {
	for _, e := range evs {
		if e["event_id"] == eventID {
			return true
		}
	}
	return false
}

// registration returns the service's registration file with the given namespaces (YAML).
func (a *fakeAS) registration(namespaces string, extra string) string {
	return fmt.Sprintf(`id: %q
url: %q
as_token: %q
hs_token: %q
sender_localpart: "_%s_bot"
rate_limited: false
%s
namespaces:
%s
`, a.ID, a.srv.URL, a.ASToken, a.HSToken, a.ID, extra, namespaces)
}

// addAppServices writes the registrations next to the server's config, lists them in
// app_service_config_files and restarts the server.
func addAppServices(t *testing.T, srv *Server, registrations ...string) {
	t.Helper()
	srv.Stop()
	var paths []string
	for i, reg := range registrations {
		p := filepath.Join(srv.DataDir, fmt.Sprintf("appservice-%d.yaml", i))
		if err := os.WriteFile(p, []byte(reg), 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, fmt.Sprintf("%q", p))
	}
	cfg, err := os.ReadFile(srv.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, []byte("\napp_service_config_files: ["+strings.Join(paths, ", ")+"]\n")...)
	if err := os.WriteFile(srv.ConfigPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Start()
}

// asClient is the service's client: its as_token, acting as its sender by default.
func (a *fakeAS) asClient(t *testing.T, srv *Server) *Client {
	return &Client{t: t, srv: srv, UserID: "@_" + a.ID + "_bot:" + srv.Name, Token: a.ASToken}
}

// as returns path with ?user_id= (or &user_id=) of userID.
func as(path, userID string) string {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return path + sep + "user_id=" + url.QueryEscape(userID)
}
