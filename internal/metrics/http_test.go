package metrics

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

type devices struct{}

func (devices) DeviceByToken(context.Context, string) (*storage.Device, error) {
	return &storage.Device{UserID: "@alice:example.org", DeviceID: "DEV"}, nil
}

// TestHTTP: requests are counted by route template (variable patterns dropped), method and
// status, unmatched ones as "unmatched"; the access log has the template and the user, never
// the path's IDs or a token from the query string; a nil access logger logs nothing.
func TestHTTP(t *testing.T) {
	m := New("example.org")
	router := mux.NewRouter().SkipClean(true).UseEncodedPath()
	router.Use(httputil.RecordRoute)
	teapot := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	router.Handle("/_matrix/client/{version:(?:v3|r0)}/rooms/{roomId}/send/{eventType}/{txnId}",
		httputil.Authenticate(slog.Default(), devices{}, teapot)).Methods(http.MethodPut)
	var logs bytes.Buffer
	h := m.HTTP("client", slog.New(slog.NewTextHandler(&logs, nil)), router)

	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPut, "/_matrix/client/v3/rooms/!room:example.org/send/m.room.message/t1?access_token=secret", nil))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/nothing/here", nil))

	const route = "/_matrix/client/{version}/rooms/{roomId}/send/{eventType}/{txnId}"
	if got := value(m.requests.WithLabelValues("client", route, "PUT", "418")); got != 1 {
		t.Errorf("requests{route=%s,status=418} = %v, want 1", route, got)
	}
	if got := value(m.requests.WithLabelValues("client", "unmatched", "GET", "404")); got != 1 {
		t.Errorf("requests{route=unmatched,status=404} = %v, want 1", got)
	}
	log := logs.String()
	for _, want := range []string{"msg=request", "route=" + route, "status=418", "user_id=@alice:example.org", "device_id=DEV", "route=unmatched"} {
		if !strings.Contains(log, want) {
			t.Errorf("access log without %q:\n%s", want, log)
		}
	}
	for _, bad := range []string{"secret", "!room", "access_token", "t1"} {
		if strings.Contains(log, bad) {
			t.Errorf("access log holds %q:\n%s", bad, log)
		}
	}

	logs.Reset()
	m.HTTP("client", nil, router).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil))
	if logs.Len() != 0 {
		t.Errorf("access log off, yet: %s", logs.String())
	}
}

// TestEventsCommitted counts senders of this server as local, others as remote.
func TestEventsCommitted(t *testing.T) {
	m := New("example.org")
	m.EventsCommitted([]string{"@a:example.org", "@b:example.org", "@c:other.org", "@d:example.org.evil"})
	if got := value(m.events.WithLabelValues("local")); got != 2 {
		t.Errorf("local = %v, want 2", got)
	}
	if got := value(m.events.WithLabelValues("remote")); got != 2 {
		t.Errorf("remote = %v, want 2", got)
	}
}

// value reads a counter.
func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
