package main

import (
	"context"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/lattice-chat/lattice/appservice"
	"github.com/lattice-chat/lattice/federationapi"
	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/metrics"
	"github.com/lattice-chat/lattice/mediaapi"
	"github.com/lattice-chat/lattice/pusher"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
	"github.com/lattice-chat/lattice/syncapi"
)

// components are what the metrics read at scrape time; sender is nil without federation.
type components struct {
	db       *storage.DB
	rooms    *roomserver.Server
	notifier *syncapi.Notifier
	sender   *federationapi.Sender
	pushes   *pusher.Pusher
	media    *mediaapi.Server
	appsvcs  *appservice.Server
}

// registerSources registers the families read from the components when scraped.
func registerSources(m *metrics.Metrics, c components) {
	m.Gauge("lattice_sync_long_polls_in_flight", "Sync requests (/sync and sliding sync) waiting for news.",
		func() float64 { return float64(c.notifier.LongPolls()) })
	m.Gauge("lattice_roomserver_input_queue_depth", "Inputs waiting for their room's lane, in all rooms together.",
		func() float64 { total, _ := c.rooms.InputQueue(); return float64(total) })
	m.Gauge("lattice_roomserver_input_queue_depth_max", "Inputs waiting for their room's lane in the room with the most waiting.",
		func() float64 { _, deepest := c.rooms.InputQueue(); return float64(deepest) })
	m.DBPools(c.db.PoolStats)
	m.CounterVec("lattice_push_requests_total", "Requests to push gateways, by outcome (sent, rejected: some pushkeys refused, failed: after every retry).", "outcome",
		func() map[string]float64 {
			s := c.pushes.Stats()
			return map[string]float64{"sent": float64(s.Sent), "rejected": float64(s.Rejected), "failed": float64(s.Failed)}
		})
	m.CounterVec("lattice_media_bytes_total", "Bytes of media content received from uploads and sent to downloads, by direction.", "direction",
		func() map[string]float64 {
			up, down := c.media.Traffic()
			return map[string]float64{"upload": float64(up), "download": float64(down)}
		})
	registerAppServices(m, c.appsvcs)
	if c.sender == nil {
		return
	}
	m.CounterVec("lattice_federation_transactions_total", "Transactions sent to other servers, by outcome (sent, failed).", "outcome",
		func() map[string]float64 {
			s := c.sender.Stats()
			return map[string]float64{"sent": float64(s.Sent), "failed": float64(s.Failed)}
		})
	m.Gauge("lattice_federation_destinations_backoff", "Destinations waiting out a backoff after failed transactions.",
		func() float64 { return float64(c.sender.Stats().BackingOff) })
	m.FederationQueue(func(ctx context.Context) ([]metrics.QueueDepth, error) {
		sts, err := c.db.FederationQueueStatuses(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]metrics.QueueDepth, len(sts))
		for i, s := range sts {
			out[i] = metrics.QueueDepth{Destination: s.Destination, PDUs: s.PDUs, EDUs: s.EDUs}
		}
		return out, nil
	})
}

// accessLog is the access logger, nil when logging.access_log is off.
func accessLog(cfg *config.Config, log *slog.Logger) *slog.Logger {
	if !cfg.Logging.AccessLog {
		return nil
	}
	return log
}

// errorLog routes net/http's own messages (TLS handshake errors, panics it recovered) into
// the server's log, in its format.
func errorLog(log *slog.Logger) *stdlog.Logger {
	return slog.NewLogLogger(log.Handler(), slog.LevelWarn)
}

// startMetrics serves /metrics, /health and /readyz on metrics.listen, when set, until ctx
// ends. It is a listener of its own so that the metrics are never on the public client port.
func startMetrics(ctx context.Context, cfg *config.Config, m *metrics.Metrics, db *storage.DB, log *slog.Logger) (net.Addr, error) {
	if cfg.Metrics.Listen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.Metrics.Listen)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.Handle("GET /health", metrics.Health())
	mux.Handle("GET /readyz", metrics.Ready(db.Ping))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errorLog(log)}
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Error("metrics listener", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	return ln.Addr(), nil
}

// registerAppServices registers the application services' delivery counts, by service.
func registerAppServices(m *metrics.Metrics, a *appservice.Server) {
	count := func(pick func(appservice.Counts) int64) func() map[string]float64 {
		return func() map[string]float64 {
			out := map[string]float64{}
			for id, c := range a.Counts() {
				out[id] = float64(pick(c))
			}
			return out
		}
	}
	m.CounterVec("lattice_appservice_transactions_total", "Transactions application services acknowledged, by service.", "appservice",
		count(func(c appservice.Counts) int64 { return c.Txns }))
	m.CounterVec("lattice_appservice_events_total", "Events delivered to application services, by service.", "appservice",
		count(func(c appservice.Counts) int64 { return c.Events }))
	m.CounterVec("lattice_appservice_failed_requests_total", "Transaction requests to application services that failed (each retried later), by service.", "appservice",
		count(func(c appservice.Counts) int64 { return c.Failures }))
}
