package metrics

import (
	"context"
	"database/sql"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// funcVec is a family with one label whose values a function returns at scrape time.
type funcVec struct {
	desc      *prometheus.Desc
	valueType prometheus.ValueType
	fn        func() map[string]float64
}

func (c *funcVec) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *funcVec) Collect(ch chan<- prometheus.Metric) {
	for v, n := range c.fn() {
		ch <- prometheus.MustNewConstMetric(c.desc, c.valueType, n, v)
	}
}

// CounterVec registers a counter family with one label whose values fn returns at scrape
// time (counts a component keeps by a small, fixed set of outcomes).
func (m *Metrics) CounterVec(name, help, label string, fn func() map[string]float64) {
	m.Registry.MustRegister(&funcVec{desc: prometheus.NewDesc(name, help, []string{label}, nil), valueType: prometheus.CounterValue, fn: fn})
}

// GaugeVec registers a gauge family with one label whose values fn returns at scrape time.
func (m *Metrics) GaugeVec(name, help, label string, fn func() map[string]float64) {
	m.Registry.MustRegister(&funcVec{desc: prometheus.NewDesc(name, help, []string{label}, nil), valueType: prometheus.GaugeValue, fn: fn})
}

// poolCollector reports database/sql pool statistics, by pool name.
type poolCollector struct {
	fn                                       func() map[string]sql.DBStats
	maxOpen, open, inUse, idle, waits, waitS *prometheus.Desc
}

// DBPools registers the statistics of the database connection pools that fn returns by name
// (SQLite: writer and reader; PostgreSQL: one pool).
func (m *Metrics) DBPools(fn func() map[string]sql.DBStats) {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("lattice_db_pool_"+name, help, []string{"pool"}, nil)
	}
	m.Registry.MustRegister(&poolCollector{
		fn:      fn,
		maxOpen: d("max_open_connections", "The most connections the pool opens."),
		open:    d("open_connections", "Connections open, in use or idle."),
		inUse:   d("in_use_connections", "Connections in use."),
		idle:    d("idle_connections", "Idle connections."),
		waits:   d("wait_count_total", "Times a statement waited for a free connection."),
		waitS:   d("wait_duration_seconds_total", "Time spent waiting for a free connection."),
	})
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.maxOpen, c.open, c.inUse, c.idle, c.waits, c.waitS} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for name, s := range c.fn() {
		ch <- prometheus.MustNewConstMetric(c.maxOpen, prometheus.GaugeValue, float64(s.MaxOpenConnections), name)
		ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(s.OpenConnections), name)
		ch <- prometheus.MustNewConstMetric(c.inUse, prometheus.GaugeValue, float64(s.InUse), name)
		ch <- prometheus.MustNewConstMetric(c.idle, prometheus.GaugeValue, float64(s.Idle), name)
		ch <- prometheus.MustNewConstMetric(c.waits, prometheus.CounterValue, float64(s.WaitCount), name)
		ch <- prometheus.MustNewConstMetric(c.waitS, prometheus.CounterValue, s.WaitDuration.Seconds(), name)
	}
}

// QueueDepth is one federation destination's share of the outbox.
type QueueDepth struct {
	Destination string
	PDUs, EDUs  int
}

// topDestinations bounds the destination label: only the deepest queues get their own series.
const topDestinations = 20

// queueCollector reports the federation outbox, read from the database at scrape time.
type queueCollector struct {
	fn                  func(ctx context.Context) ([]QueueDepth, error)
	total, perDest, dst *prometheus.Desc
}

// FederationQueue registers the federation outbox depth: the total of queued PDUs and EDUs
// and the PDUs queued for each of the deepest destinations. fn is called once per scrape (a
// database read bounded to 2 s), never on a request path.
func (m *Metrics) FederationQueue(fn func(ctx context.Context) ([]QueueDepth, error)) {
	m.Registry.MustRegister(&queueCollector{
		fn:      fn,
		total:   prometheus.NewDesc("lattice_federation_queue_total", "Items queued for other servers, by kind (pdu, edu).", []string{"kind"}, nil),
		perDest: prometheus.NewDesc("lattice_federation_queue_pdus", "PDUs queued for a destination, for the 20 deepest queues.", []string{"destination"}, nil),
		dst:     prometheus.NewDesc("lattice_federation_queue_destinations", "Destinations with something queued.", nil, nil),
	})
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.total
	ch <- c.perDest
	ch <- c.dst
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	qs, err := c.fn(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.total, err)
		return
	}
	var pdus, edus, dests int
	for _, q := range qs {
		pdus += q.PDUs
		edus += q.EDUs
		if q.PDUs+q.EDUs > 0 {
			dests++
		}
	}
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(pdus), "pdu")
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(edus), "edu")
	ch <- prometheus.MustNewConstMetric(c.dst, prometheus.GaugeValue, float64(dests))
	sort.Slice(qs, func(i, j int) bool { return qs[i].PDUs > qs[j].PDUs })
	for i, q := range qs {
		if i == topDestinations || q.PDUs == 0 {
			break
		}
		ch <- prometheus.MustNewConstMetric(c.perDest, prometheus.GaugeValue, float64(q.PDUs), q.Destination)
	}
}
