package appservice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
)

// request makes one request to a service's API with its hs_token and returns the status and
// up to 1 MiB of the response body.
func (s *Server) request(ctx context.Context, svc *Service, method, path string, query url.Values, body any) (int, []byte, error) {
	u := svc.endpoint(path)
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+svc.HSToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// QueryUser asks the services whose users namespaces hold userID whether it exists
// (GET /_matrix/app/v1/users/{userId}); a service that answers 200 has created it.
func (s *Server) QueryUser(ctx context.Context, userID string) bool {
	for _, svc := range s.registry().UserQueried(userID) {
		status, _, err := s.request(ctx, svc, http.MethodGet, "/_matrix/app/v1/users/"+url.PathEscape(userID), nil, nil)
		if err != nil {
			s.log.Warn("application service user query failed", "appservice", svc.ID, "user_id", userID, "err", err)
			continue
		}
		if status == http.StatusOK {
			return true
		}
	}
	return false
}

// QueryAlias asks the services whose aliases namespaces hold alias whether it exists
// (GET /_matrix/app/v1/rooms/{roomAlias}); a service that answers 200 has created the room
// and the alias.
func (s *Server) QueryAlias(ctx context.Context, alias string) bool {
	for _, svc := range s.registry().AliasQueried(alias) {
		status, _, err := s.request(ctx, svc, http.MethodGet, "/_matrix/app/v1/rooms/"+url.PathEscape(alias), nil, nil)
		if err != nil {
			s.log.Warn("application service alias query failed", "appservice", svc.ID, "alias", alias, "err", err)
			continue
		}
		if status == http.StatusOK {
			return true
		}
	}
	return false
}

// Ping calls the service's POST /_matrix/app/v1/ping for POST
// /_matrix/client/v1/appservice/{appserviceId}/ping, made by caller (the service whose
// as_token the request carried, or nil), and returns {duration_ms}.
func (s *Server) Ping(ctx context.Context, caller *Service, id, txnID string) (any, error) {
	svc := s.registry().ByID(id)
	if caller == nil || svc != caller {
		return nil, spec.Forbidden("the application service ID does not match the access token")
	}
	if !svc.HasURL() {
		return nil, &httputil.Error{Status: http.StatusBadRequest, Code: "M_URL_NOT_SET", Msg: "the application service has no URL"}
	}
	body := map[string]string{}
	if txnID != "" {
		body["transaction_id"] = txnID
	}
	start := time.Now()
	status, resp, err := s.request(ctx, svc, http.MethodPost, "/_matrix/app/v1/ping", nil, body)
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return nil, &httputil.Error{Status: http.StatusGatewayTimeout, Code: "M_CONNECTION_TIMEOUT", Msg: "the application service did not answer in time"}
	case err != nil:
		return nil, &httputil.Error{Status: http.StatusBadGateway, Code: "M_CONNECTION_FAILED", Msg: "could not reach the application service: " + err.Error()}
	case status/100 != 2:
		return nil, &httputil.Error{Status: http.StatusBadGateway, Code: "M_BAD_STATUS",
			Msg:   fmt.Sprintf("ping returned status %d", status),
			Extra: map[string]any{"status": status, "body": string(resp)}}
	}
	return map[string]int64{"duration_ms": time.Since(start).Milliseconds()}, nil
}
