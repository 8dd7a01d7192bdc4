package e2e

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// withMetrics turns s's metrics listener on at a free loopback port (s is restarted) and
// returns its base URL.
func withMetrics(t *testing.T, s *Server) string {
	t.Helper()
	s.Stop()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	editConfig(t, s, "public client port.\n  listen: \"\"", "public client port.\n  listen: \""+addr+"\"")
	s.Start()
	return "http://" + addr
}

// editConfig replaces old by new in s's configuration file, failing if old is not there.
func editConfig(t testing.TB, s *Server, old, new string) {
	t.Helper()
	cfg, err := os.ReadFile(s.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), old) {
		t.Fatalf("configuration has no %q", old)
	}
	if err := os.WriteFile(s.ConfigPath, []byte(strings.Replace(string(cfg), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// scrape reads and parses the Prometheus text exposition at url.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := httpClient.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value is the sum of family name's samples whose labels include every pair in labels
// (counters and gauges; the sample count for histograms), and whether any sample matched.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	var sum float64
	found := false
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			ok := false
			for _, l := range m.Label {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					ok = true
				}
			}
			if !ok {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		}
	}
	return sum, found
}

func getText(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetrics runs a workload on a federating server with a push gateway and checks that
// every lattice_* family reports it, labelled by route template (never a raw path), and
// that the access log has one line per request without tokens.
func TestMetrics(t *testing.T) {
	ca := newTestCA(t)
	a, b := startProxiedServer(t, ca), startProxiedServer(t, ca)
	metricsURL := withMetrics(t, a.Server)
	gw := newFakeGateway(t)

	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	carol := a.Register(t, "carol")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	if r := joinRoom(bob, roomID, a.Name); r.Status != 200 {
		t.Fatalf("bob joining over federation: %d %s", r.Status, r.Raw)
	}
	join(carol, roomID)
	carol.MustDo("POST", "/_matrix/client/v3/pushers/set", map[string]any{"kind": "http", "app_id": "org.example.app", "pushkey": "carolkey",
		"app_display_name": "Example", "device_display_name": "phone", "lang": "en",
		"data": map[string]any{"url": gw.srv.URL + "/_matrix/push/v1/notify"}})
	alice.Send(roomID, "hello over federation")
	gw.next(t)
	say(bob, roomID, "hello back") // a remote event for a to persist

	mxc := upload(t, alice, []byte("some media bytes"), "text/plain", "a.txt")
	if r := a.media(t, alice.Token, "GET", "/_matrix/client/v1/media/download/"+strings.TrimPrefix(mxc, "mxc://"), nil, ""); r.Status != 200 {
		t.Fatalf("download: %d", r.Status)
	}

	// A long-poll in flight while scraping: syncs one after the other (an earlier one may
	// return at once with news still arriving from the other server) until stopped.
	var stopPolling atomic.Bool
	done := make(chan int, 1)
	go func() {
		since := str(alice.Sync("", "", 0).Body, "next_batch")
		for {
			r := alice.Do("GET", "/_matrix/client/v3/sync?timeout=10000&since="+since, nil)
			if r.Status != 200 || stopPolling.Load() {
				done <- r.Status
				return
			}
			since = str(r.Body, "next_batch")
		}
	}()
	var fams map[string]*dto.MetricFamily
	ok, state := poll(10*time.Second, 50*time.Millisecond, func() (bool, string) {
		fams = scrape(t, metricsURL)
		v, _ := value(fams, "lattice_sync_long_polls_in_flight")
		return v >= 1, fmt.Sprintf("long polls %v", v)
	})
	if !ok {
		t.Errorf("no long-poll in flight: %s", state)
	}
	ok, state = poll(20*time.Second, 100*time.Millisecond, func() (bool, string) {
		fams = scrape(t, metricsURL)
		v, _ := value(fams, "lattice_federation_transactions_total", "outcome", "sent")
		return v >= 1, fmt.Sprintf("transactions sent %v", v)
	})
	if !ok {
		t.Errorf("no federation transaction counted: %s", state)
	}
	stopPolling.Store(true)
	alice.Send(roomID, "wake the long-poll")
	if status := <-done; status != 200 {
		t.Errorf("long-poll sync: %d", status)
	}

	nonZero := []struct {
		name   string
		labels []string
	}{
		{"lattice_http_requests_total", []string{"api", "client", "route", "/_matrix/client/{version}/rooms/{roomId}/send/{eventType}/{txnId}", "method", "PUT", "status", "200"}},
		{"lattice_http_request_duration_seconds", []string{"api", "client", "method", "POST"}},
		{"lattice_http_requests_total", []string{"api", "federation"}},
		{"lattice_events_persisted_total", []string{"origin", "local"}},
		{"lattice_events_persisted_total", []string{"origin", "remote"}},
		{"lattice_roomserver_input_wait_seconds", nil},
		{"lattice_db_query_duration_seconds", []string{"op", "query_row"}},
		{"lattice_db_query_duration_seconds", []string{"op", "commit"}},
		{"lattice_db_pool_open_connections", nil},
		{"lattice_db_pool_max_open_connections", nil},
		{"lattice_push_requests_total", []string{"outcome", "sent"}},
		{"lattice_media_bytes_total", []string{"direction", "upload"}},
		{"lattice_media_bytes_total", []string{"direction", "download"}},
		{"lattice_federation_transactions_total", []string{"outcome", "sent"}},
		{"go_goroutines", nil},
		{"go_memstats_heap_alloc_bytes", nil},
		{"process_resident_memory_bytes", nil},
	}
	for _, c := range nonZero {
		if v, found := value(fams, c.name, c.labels...); !found || v <= 0 {
			t.Errorf("%s%v = %v (found %v), want > 0", c.name, c.labels, v, found)
		}
	}
	// Present, possibly zero.
	for _, name := range []string{"lattice_roomserver_input_queue_depth", "lattice_roomserver_input_queue_depth_max",
		"lattice_db_pool_in_use_connections", "lattice_db_pool_wait_count_total", "lattice_db_pool_wait_duration_seconds_total",
		"lattice_federation_queue_total", "lattice_federation_queue_destinations", "lattice_federation_destinations_backoff"} {
		if fams[name] == nil {
			t.Errorf("family %s missing", name)
		}
	}
	// The Grafana dashboard asks for families the server has.
	dash, err := os.ReadFile("../contrib/grafana/lattice-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`\b(?:lattice|go|process)_[a-z_]+`).FindAllString(string(dash), -1) {
		base := regexp.MustCompile(`_(bucket|count|sum)$`).ReplaceAllString(name, "")
		// The per-destination queue has samples only while something is queued.
		if fams[name] == nil && fams[base] == nil && name != "lattice_federation_queue_pdus" {
			t.Errorf("the dashboard uses %s, which /metrics does not have", name)
		}
	}
	// Route labels are templates, never raw paths with IDs in them.
	for _, m := range fams["lattice_http_requests_total"].Metric {
		for _, l := range m.Label {
			if l.GetName() == "route" && (strings.Contains(l.GetValue(), "!") || strings.Contains(l.GetValue(), "@")) {
				t.Errorf("route label holds a raw path: %q", l.GetValue())
			}
		}
	}

	// Metrics are not on the client port; health is on both.
	if code, _ := getText(t, a.URL+"/metrics"); code != 404 {
		t.Errorf("GET /metrics on the client port: %d, want 404", code)
	}
	for _, u := range []string{a.URL + "/health", metricsURL + "/health"} {
		if code, body := getText(t, u); code != 200 || body != "OK" {
			t.Errorf("GET %s: %d %q, want 200 OK", u, code, body)
		}
	}
	for _, u := range []string{a.URL + "/readyz", metricsURL + "/readyz"} {
		if code, _ := getText(t, u); code != 200 {
			t.Errorf("GET %s: %d, want 200", u, code)
		}
	}

	// The access log: a line per request with the route template and the user, no token.
	a.Stop()
	log, _ := os.ReadFile(a.logPath)
	if strings.Contains(string(log), alice.Token) || strings.Contains(string(log), "access_token") {
		t.Error("the server log holds an access token")
	}
	sendLine := regexp.MustCompile(`msg=request api=client method=PUT route=/_matrix/client/\{version\}/rooms/\{roomId\}/send/\{eventType\}/\{txnId\} status=200 duration_ms=[0-9.]+ user_id=` + regexp.QuoteMeta(alice.UserID))
	if !sendLine.Match(log) {
		t.Errorf("no access log line for alice's send in the server log:\n%s", a.Log())
	}
	// One format for every line, gomatrixserverlib's (logrus) included: bob's server
	// checked the signatures of the room's state when he joined.
	bLog, _ := os.ReadFile(b.logPath)
	if !strings.Contains(string(bLog), "Checking event signatures") {
		t.Error("gomatrixserverlib's log lines are missing")
	}
	for _, line := range strings.Split(strings.TrimSpace(string(log)+string(bLog)), "\n") {
		if !regexp.MustCompile(`^time=\d{4}-\d\d-\d\dT[0-9:.]+Z level=[A-Z]+ msg=`).MatchString(line) {
			t.Errorf("log line not in the server's format: %q", line)
		}
	}
	if !regexp.MustCompile(`msg=request api=federation method=PUT route=/_matrix/federation/v1/send/\{txnId\} status=200 duration_ms=[0-9.]+ origin=` + regexp.QuoteMeta(b.Name)).Match(log) {
		t.Error("no access log line for bob's server's transaction")
	}
}

// TestReadyz: /readyz answers 200 while the database answers, 503 while it cannot be
// reached (PostgreSQL behind a TCP proxy that cuts every connection), and 200 again once it
// is back; /health stays 200 throughout. SQLite cannot become unreachable: there it checks
// the 200 only.
func TestReadyz(t *testing.T) {
	if os.Getenv("LATTICE_E2E_BACKEND") != "postgres" {
		s := StartServer(t)
		if code, body := getText(t, s.URL+"/readyz"); code != 200 || body != "OK" {
			t.Fatalf("GET /readyz: %d %q, want 200 OK", code, body)
		}
		return
	}
	dbURL, err := url.Parse(storagetest.NewPostgresDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := startFedProxy(t) // raw TCP forwarding, with Partition and Heal
	proxy.setTarget(dbURL.Host)
	dbURL.Host = proxy.Addr()
	s := StartServer(t, WithDatabase(dbURL.String()))
	if code, _ := getText(t, s.URL+"/readyz"); code != 200 {
		t.Fatalf("GET /readyz: %d, want 200", code)
	}
	proxy.Partition()
	start := time.Now()
	ok, state := poll(15*time.Second, 100*time.Millisecond, func() (bool, string) {
		code, body := getText(t, s.URL+"/readyz")
		return code == 503, fmt.Sprintf("%d %q", code, body)
	})
	if !ok {
		t.Fatalf("GET /readyz with the database unreachable: %s, want 503", state)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("readiness took %v to notice the database was gone", d)
	}
	if code, _ := getText(t, s.URL+"/health"); code != 200 {
		t.Errorf("GET /health with the database unreachable: %d, want 200", code)
	}
	proxy.Heal()
	ok, state = poll(15*time.Second, 100*time.Millisecond, func() (bool, string) {
		code, body := getText(t, s.URL+"/readyz")
		return code == 200, fmt.Sprintf("%d %q", code, body)
	})
	if !ok {
		t.Fatalf("GET /readyz with the database back: %s, want 200", state)
	}
}

// TestAccessLogOff: logging.access_log: false writes no request lines.
func TestAccessLogOff(t *testing.T) {
	s := StartServer(t)
	s.Stop()
	editConfig(t, s, "access_log: true", "access_log: false")
	before, _ := os.ReadFile(s.logPath) // the first start logged its requests
	s.Start()
	s.Register(t, "alice")
	s.Stop()
	all, _ := os.ReadFile(s.logPath)
	if log := string(all[len(before):]); strings.Contains(log, "msg=request") || !strings.Contains(log, "lattice started") {
		t.Errorf("server log with the access log off:\n%s", log)
	}
}
