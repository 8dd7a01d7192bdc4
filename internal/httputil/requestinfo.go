package httputil

import (
	"context"
	"net/http"
	"strings"
	"sync"

	"github.com/gorilla/mux"
)

// RequestInfo is what the layers of one request learn about it, for the access log and the
// metrics that the outermost middleware writes when the request is done: the route template
// (RecordRoute) and the authenticated user (Authenticate) or, on the federation API, the
// authenticated origin server. It is written and read on the request's goroutine only.
type RequestInfo struct {
	Route    string // gorilla/mux path template; "" when no route matched
	UserID   string
	DeviceID string
	Origin   string // the requesting server of a signed federation request
}

type requestInfoKey struct{}

// WithRequestInfo returns ctx carrying a fresh RequestInfo, and that RequestInfo.
func WithRequestInfo(ctx context.Context) (context.Context, *RequestInfo) {
	ri := &RequestInfo{}
	return context.WithValue(ctx, requestInfoKey{}, ri), ri
}

// Info returns the request's RequestInfo, or nil outside the middleware that makes one.
func Info(ctx context.Context) *RequestInfo {
	ri, _ := ctx.Value(requestInfoKey{}).(*RequestInfo)
	return ri
}

// RecordRoute is a gorilla/mux middleware (router.Use) that notes the matched route's path
// template in the request's RequestInfo: the label metrics and the access log use instead of
// the raw path, which holds IDs and so would be unbounded.
func RecordRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ri := Info(r.Context()); ri != nil {
			if route := mux.CurrentRoute(r); route != nil {
				ri.Route = template(route)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// templates caches the template of each route, as template makes it.
var templates sync.Map // *mux.Route -> string

// template returns route's path template without its variables' patterns:
// /_matrix/client/{version}/sync for /_matrix/client/{version:(?:v3|r0)}/sync.
func template(route *mux.Route) string {
	if t, ok := templates.Load(route); ok {
		return t.(string)
	}
	raw, err := route.GetPathTemplate()
	if err != nil {
		return ""
	}
	var b strings.Builder
	depth, skipping := 0, false
	for _, c := range raw {
		switch {
		case c == '{':
			depth++
		case c == '}':
			depth--
			if depth == 0 {
				skipping = false
			}
		case c == ':' && depth == 1:
			skipping = true
		}
		if !skipping || (c == '}' && depth == 0) {
			b.WriteRune(c)
		}
	}
	templates.Store(route, b.String())
	return b.String()
}
