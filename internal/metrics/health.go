package metrics

import (
	"context"
	"net/http"
	"time"
)

// Health handles GET /health, the liveness check: 200 "OK" while the process serves HTTP,
// as Synapse's /health does. It looks at nothing else, so that a slow database does not get
// a live process restarted.
func Health() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write([]byte("OK"))
		}
	})
}

// readyTimeout bounds the database ping of a readiness check.
const readyTimeout = 2 * time.Second

// Ready handles GET /readyz, the readiness check: 200 "OK" when ping (a database round trip)
// succeeds within 2 seconds, 503 otherwise, so that a load balancer sends no traffic to a
// process that cannot reach its database.
func Ready(ping func(ctx context.Context) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := ping(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("database unavailable"))
			return
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("OK"))
	})
}
