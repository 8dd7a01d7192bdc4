package httputil

import (
	"net/http"
	"strings"

	"github.com/gorilla/mux"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// probeMethods are the methods of the Matrix APIs, tried to tell a known path asked with the
// wrong method from an unknown path.
var probeMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete}

// SetUnmatched makes router answer requests no route takes as the spec's "Common error codes"
// say: 405 M_UNRECOGNIZED for a known endpoint asked with a method it does not have, 404
// M_UNRECOGNIZED for an unknown one.
//
// gorilla/mux alone answers 405 only when the path's routes sit in one (sub)router: when a
// later subrouter with a matching prefix fails too (the client API's routes are split between
// clientapi and syncapi under one prefix), the method mismatch is forgotten and it falls back
// to the not-found handler. So that handler asks the router again with each other method.
func SetUnmatched(router *mux.Router) {
	router.MethodNotAllowedHandler = MethodNotAllowedHandler()
	router.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var allowed []string
		for _, m := range probeMethods {
			if m == r.Method {
				continue
			}
			probe := r.Clone(r.Context())
			probe.Method = m
			var match mux.RouteMatch
			if router.Match(probe, &match) && match.MatchErr == nil {
				allowed = append(allowed, m)
			}
		}
		if len(allowed) == 0 {
			WriteJSON(w, http.StatusNotFound, spec.Unrecognized("unrecognized request"))
			return
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		WriteJSON(w, http.StatusMethodNotAllowed, spec.Unrecognized("method not allowed"))
	})
}
