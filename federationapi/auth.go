package federationapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/fclient"

	"github.com/lattice-chat/lattice/internal/httputil"
)

type requestKey struct{}

// request returns the verified federation request of a handler behind authenticate: its
// origin and its JSON content.
func request(ctx context.Context) *fclient.FederationRequest {
	fr, _ := ctx.Value(requestKey{}).(*fclient.FederationRequest)
	return fr
}

// unauthorized is the spec's answer to a request that fails authentication.
func unauthorized(format string, args ...any) error {
	return httputil.Errorf(http.StatusUnauthorized, "M_UNAUTHORIZED", format, args...)
}

// authenticate wraps h so that it runs only for a request with a valid X-Matrix signature,
// as the spec's "Request Authentication" says:
//  1. the Authorization header names the origin, the destination, the key ID and the signature;
//  2. a destination, when given, must be this server (else 401, though gomatrixserverlib
//     says 400);
//  3. the origin's key must be valid now (fetched through the keyring, strict validity);
//  4. the signature must cover the method, the URI with its query, origin, destination and
//     the JSON content.
//
// The handler reads the content from request(ctx).Content(): the body has been consumed.
func (s *Server) authenticate(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fr, err := s.verifyRequest(r)
		if err != nil {
			httputil.WriteError(w, r, s.log, err)
			return
		}
		if ri := httputil.Info(r.Context()); ri != nil {
			ri.Origin = string(fr.Origin())
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestKey{}, fr)))
	})
}

// verifyRequest checks the X-Matrix signature of r.
func (s *Server) verifyRequest(r *http.Request) (*fclient.FederationRequest, error) {
	found := false
	for _, h := range r.Header.Values("Authorization") {
		scheme, origin, destination, _, _ := fclient.ParseAuthorization(h)
		if scheme != "X-Matrix" {
			continue
		}
		found = true
		if destination != "" && destination != s.cfg.ServerName {
			s.log.Warn("federation request for another server", "origin", string(origin), "destination", string(destination))
			return nil, unauthorized("this server is not %s", destination)
		}
	}
	if !found {
		return nil, unauthorized("missing X-Matrix Authorization header")
	}
	fr, res := fclient.VerifyHTTPRequest(r, s.cfg.Now(), s.cfg.ServerName, nil, s.keyRing)
	switch {
	case fr != nil && res.Code == http.StatusOK:
		// A signed body is still untrusted input: PDUs are stored as received, so one that
		// is not UTF-8, or nests without bound, is refused here like a client's.
		if content := fr.Content(); len(content) > 0 {
			if err := httputil.CheckJSONText(content); err != nil {
				return nil, err
			}
		}
		return fr, nil
	case res.Code >= 500:
		return nil, fmt.Errorf("verify federation request: %s", messageOf(res.JSON))
	default:
		msg := messageOf(res.JSON)
		s.log.Warn("federation request refused", "method", r.Method, "path", r.URL.Path, "err", msg)
		return nil, unauthorized("invalid X-Matrix authentication: %s", msg)
	}
}

// messageOf returns the message of a gomatrixserverlib error response ({"message": ...}).
func messageOf(v any) string {
	var m struct {
		Message string `json:"message"`
	}
	if b, err := json.Marshal(v); err == nil && json.Unmarshal(b, &m) == nil && m.Message != "" {
		return m.Message
	}
	return fmt.Sprint(v)
}
