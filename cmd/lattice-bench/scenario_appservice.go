package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// asKind is the application service a scenario registers on its server.
type asKind int

const (
	asNone asKind = iota
	asLive        // an HTTP server in this process, interested in every event
	asDead        // a loopback port where nothing listens: every connection is refused
	asHung        // a listener that accepts connections and never answers
)

const benchHSToken = "bench-hs-token"

// asEndpoint is the transactions endpoint of the registered service. The live one records
// every m.room.message event it is pushed (a repeated transaction ID is acknowledged and
// ignored, as the spec asks of services).
type asEndpoint struct {
	ln  net.Listener // nil for asDead
	srv *http.Server // asLive only

	mu      sync.Mutex
	txns    map[string]bool
	count   map[string]int       // event ID -> times pushed in distinct transactions
	arrived map[string]time.Time // event ID -> first arrival
	conns   []net.Conn           // asHung: the connections held open
	closed  bool
}

// startEndpoint starts the service's endpoint, writes its registration file into dir and
// returns the configuration lines that register it.
func startEndpoint(kind asKind, dir string) (*asEndpoint, string, error) {
	a := &asEndpoint{txns: map[string]bool{}, count: map[string]int{}, arrived: map[string]time.Time{}}
	var url string
	switch kind {
	case asDead:
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		url = fmt.Sprintf("http://127.0.0.1:%d", port)
	case asLive, asHung:
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, "", err
		}
		a.ln = ln
		url = "http://" + ln.Addr().String()
		if kind == asLive {
			a.srv = &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second}
			go func() { _ = a.srv.Serve(ln) }()
		} else {
			go a.hold()
		}
	}
	reg := fmt.Sprintf(`id: bench
url: %q
as_token: bench-as-token
hs_token: %s
sender_localpart: benchbot
rate_limited: false
namespaces:
  users:
    - exclusive: false
      regex: "@.*"
  aliases: []
  rooms: []
`, url, benchHSToken)
	path := filepath.Join(dir, "bench-appservice.yaml")
	if err := os.WriteFile(path, []byte(reg), 0o600); err != nil {
		a.close()
		return nil, "", err
	}
	return a, fmt.Sprintf("\napp_service_config_files:\n  - %q\n", path), nil
}

// hold accepts connections and keeps them open without reading or answering.
func (a *asEndpoint) hold() {
	for {
		c, err := a.ln.Accept()
		if err != nil {
			return
		}
		a.mu.Lock()
		if a.closed {
			c.Close()
		} else {
			a.conns = append(a.conns, c)
		}
		a.mu.Unlock()
	}
}

func (a *asEndpoint) close() {
	a.mu.Lock()
	a.closed = true
	conns := a.conns
	a.mu.Unlock()
	if a.srv != nil {
		_ = a.srv.Close()
	} else if a.ln != nil {
		_ = a.ln.Close()
	}
	for _, c := range conns {
		c.Close()
	}
}

// ServeHTTP answers PUT /_matrix/app/v1/transactions/{txnId}; anything else is unknown.
func (a *asEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	txnID, ok := strings.CutPrefix(r.URL.Path, "/_matrix/app/v1/transactions/")
	if !ok || r.Method != http.MethodPut {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"errcode":"M_UNRECOGNIZED","error":"not handled by the benchmark"}`)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+benchHSToken {
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"errcode":"M_FORBIDDEN"}`)
		return
	}
	var body struct {
		Events []struct {
			EventID string `json:"event_id"`
			Type    string `json:"type"`
		} `json:"events"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"errcode":"M_BAD_JSON"}`)
		return
	}
	now := time.Now()
	a.mu.Lock()
	if !a.txns[txnID] {
		a.txns[txnID] = true
		for _, ev := range body.Events {
			if ev.Type != "m.room.message" {
				continue
			}
			a.count[ev.EventID]++
			if _, ok := a.arrived[ev.EventID]; !ok {
				a.arrived[ev.EventID] = now
			}
		}
	}
	a.mu.Unlock()
	io.WriteString(w, "{}")
}

// has reports whether every message of acked was pushed to the service.
func (a *asEndpoint) has(acked []sent) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range acked {
		if a.count[s.eventID] == 0 {
			return false
		}
	}
	return true
}

// wait waits until every message of acked was pushed, or limit passes.
func (a *asEndpoint) wait(ctx context.Context, acked []sent, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for !a.has(acked) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
}

// check returns an error unless every message of acked was pushed exactly once.
func (a *asEndpoint) check(acked []sent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	missing, dup := 0, 0
	for _, s := range acked {
		switch n := a.count[s.eventID]; {
		case n == 0:
			missing++
		case n > 1:
			dup++
		}
	}
	if missing > 0 || dup > 0 {
		return fmt.Errorf("application service: %d of %d acknowledged messages never pushed, %d pushed in more than one transaction",
			missing, len(acked), dup)
	}
	return nil
}

// delivery returns, for the messages of acked that arrived, the time from the 200 of the
// send to the arrival at the service, and the time from the first send's start to the last
// arrival.
func (a *asEndpoint) delivery(acked []sent) ([]time.Duration, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ds []time.Duration
	var first, last time.Time
	for _, s := range acked {
		if first.IsZero() || s.at.Before(first) {
			first = s.at
		}
		t, ok := a.arrived[s.eventID]
		if !ok {
			continue
		}
		ds = append(ds, t.Sub(s.done))
		if t.After(last) {
			last = t
		}
	}
	return ds, last.Sub(first)
}

// sharedAndPaced is the workload of the application service scenarios: send-shared (16
// senders as fast as they can into one room, one receiver) and then delivery (the same
// senders at PacedRate to Receivers long-polling receivers), on one server.
func sharedAndPaced(ctx context.Context, e *env, after func(phase string, res sendResult)) error {
	senders, room, err := sharedRoom(ctx, e)
	if err != nil {
		return err
	}
	rs, err := receiversFor(ctx, e, e.sz.Receivers, []string{room})
	if err != nil {
		return err
	}
	roomOf := func(int) string { return room }
	res, err := measureSendsResult(ctx, e, sendSetup{senders: senders, room: roomOf, receivers: rs[:1], tag: "msg"}, e.sz.SharedMessages, 0)
	if err != nil {
		return err
	}
	after("", res)
	interval := time.Duration(len(senders)) * time.Second / time.Duration(e.sz.PacedRate)
	e.logf("%d receivers long-poll; %d senders send %d messages each at %d msg/s in total",
		len(rs), len(senders), e.sz.PacedMessages, e.sz.PacedRate)
	res, err = measureSendsResult(ctx, e, sendSetup{senders: senders, room: roomOf, receivers: rs, tag: "paced", prefix: "paced: "},
		e.sz.PacedMessages, interval)
	if err != nil {
		return err
	}
	after("paced: ", res)
	return nil
}

// runAppService: the workload with a service interested in every event (users namespace
// @.*): the events/s pushed to it and the latency from a send's 200 to the event's arrival
// at the service, each message checked to arrive exactly once.
func runAppService(ctx context.Context, e *env) error {
	return sharedAndPaced(ctx, e, func(phase string, res sendResult) {
		e.service.wait(ctx, res.acked, 120*time.Second)
		ds, span := e.service.delivery(res.acked)
		e.figure(phase+"events pushed to the service", float64(len(ds)), "")
		e.figure(phase+"events/s pushed to the service", float64(len(ds))/span.Seconds(), "events/s")
		e.figure(phase+"service delivery p50 (from send's 200)", ms(percentile(ds, 50)), "ms")
		e.figure(phase+"service delivery p99 (from send's 200)", ms(percentile(ds, 99)), "ms")
		e.check(e.service.check(res.acked))
	})
}

// runAppServiceDead: the same workload beside a service that is dead (or hung): the send and
// /sync figures are to be read beside those of send-shared and delivery.
func runAppServiceDead(ctx context.Context, e *env) error {
	return sharedAndPaced(ctx, e, func(string, sendResult) {})
}
