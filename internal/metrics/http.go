package metrics

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/lattice-chat/lattice/internal/httputil"
)

// statusWriter remembers the status of the response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (deadlines, flushing).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// knownMethods bounds the method label; anything else counts as "other".
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodDelete: true, http.MethodOptions: true, http.MethodPatch: true,
}

// HTTP wraps h, the whole handler of one API ("client" or "federation"), so that every
// request is counted and timed by route template, method and status, and, when access is
// not nil, logged there in one line at info level, with the authenticated user or origin
// server. The routers inside h must use
// httputil.RecordRoute for the template, and authentication fills in the user. Nothing of
// the raw path or the query string is logged: they hold IDs and may hold an access token.
func (m *Metrics) HTTP(api string, access *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx, ri := httputil.WithRequestInfo(r.Context())
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			// Recorded also when a handler panics (httputil.Recover sits inside and answers
			// 500) or the client went away (status 0: nothing was written).
			d := time.Since(start)
			route := ri.Route
			if route == "" {
				route = "unmatched"
			}
			method := r.Method
			if !knownMethods[method] {
				method = "other"
			}
			status := sw.status
			if status == 0 {
				status = http.StatusOK // net/http sends 200 for a handler that wrote nothing
			}
			code := strconv.Itoa(status)
			m.requests.WithLabelValues(api, route, method, code).Inc()
			m.durations.WithLabelValues(api, route, method).Observe(d.Seconds())
			if access != nil {
				attrs := []slog.Attr{
					slog.String("api", api), slog.String("method", method), slog.String("route", route),
					slog.Int("status", status), slog.Float64("duration_ms", float64(d.Microseconds())/1000),
				}
				if ri.UserID != "" {
					attrs = append(attrs, slog.String("user_id", ri.UserID), slog.String("device_id", ri.DeviceID))
				}
				if ri.Origin != "" {
					attrs = append(attrs, slog.String("origin", ri.Origin))
				}
				access.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
			}
		}()
		h.ServeHTTP(sw, r.WithContext(ctx))
	})
}
