// Package metrics holds Lattice's Prometheus collectors (one registry, every family named
// lattice_*), the HTTP middleware that counts and times requests and writes the access log,
// and the /health and /readyz handlers. Components do not import it: they keep plain counters
// (read here at scrape time through CounterFunc and GaugeFunc) or declare a small hook that
// cmd/lattice fills with a method of Metrics. It imports no component package.
package metrics

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is the registry and the collectors that are fed as things happen (histograms and
// labelled counters). The rest are read from the components when scraped.
type Metrics struct {
	// Registry holds every collector; Handler serves it.
	Registry *prometheus.Registry

	localSuffix string // ":" + server name: tells local senders from remote ones

	requests  *prometheus.CounterVec         // by api, route, method, status
	durations *prometheus.HistogramVec       // by api, route, method
	events    *prometheus.CounterVec         // by origin
	queries   *prometheus.HistogramVec       // by op
	queryOps  map[string]prometheus.Observer // queries' children, resolved once: the hot path
	inputWait prometheus.Histogram
}

// New returns the metrics of the server named serverName, with the Go runtime and process
// collectors registered.
func New(serverName string) *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry(), localSuffix: ":" + serverName}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lattice_http_requests_total",
		Help: "HTTP requests answered, by API (client, federation), route template, method and status.",
	}, []string{"api", "route", "method", "status"})
	m.durations = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "lattice_http_request_duration_seconds",
		Help:    "Time to answer an HTTP request, by API, route template and method (a /sync long-poll counts its wait).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"api", "route", "method"})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lattice_events_persisted_total",
		Help: "Room events committed to the database, by origin: local (sent by a user of this server) or remote.",
	}, []string{"origin"})
	m.queries = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "lattice_db_query_duration_seconds",
		Help:    "Time of a database statement until its first row or result, by operation (query, query_row, exec, commit).",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1, 5},
	}, []string{"op"})
	m.inputWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "lattice_roomserver_input_wait_seconds",
		Help:    "Time an input to a room (a local event, a remote event, a membership change) waited for the room's lane.",
		Buckets: []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
	})
	m.Registry.MustRegister(m.requests, m.durations, m.events, m.queries, m.inputWait,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.queryOps = map[string]prometheus.Observer{}
	for _, op := range []string{"query", "query_row", "exec", "commit"} {
		m.queryOps[op] = m.queries.WithLabelValues(op)
	}
	// Both origins are exported from the start, so that rates work from the first scrape.
	m.events.WithLabelValues("local")
	m.events.WithLabelValues("remote")
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// QueryDone records a database statement's time (storage's observer).
func (m *Metrics) QueryDone(op string, d time.Duration) {
	if o, ok := m.queryOps[op]; ok {
		o.Observe(d.Seconds())
		return
	}
	m.queries.WithLabelValues(op).Observe(d.Seconds())
}

// EventsCommitted counts committed room events by their senders' origin (storage's observer).
func (m *Metrics) EventsCommitted(senders []string) {
	var local, remote int
	for _, s := range senders {
		if strings.HasSuffix(s, m.localSuffix) {
			local++
		} else {
			remote++
		}
	}
	if local > 0 {
		m.events.WithLabelValues("local").Add(float64(local))
	}
	if remote > 0 {
		m.events.WithLabelValues("remote").Add(float64(remote))
	}
}

// InputWaited records how long an input waited for its room's lane (the roomserver's hook).
func (m *Metrics) InputWaited(d time.Duration) {
	m.inputWait.Observe(d.Seconds())
}

// Gauge registers a gauge whose value fn returns at scrape time. fn must be cheap and safe
// to call from any goroutine.
func (m *Metrics) Gauge(name, help string, fn func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

// Counter registers a counter whose value fn returns at scrape time (a monotonic count kept
// by a component).
func (m *Metrics) Counter(name, help string, fn func() float64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, fn))
}
