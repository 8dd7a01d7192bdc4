package appservice

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// Protocols answers GET /_matrix/client/v3/thirdparty/protocols: every protocol a service
// declares, as its services describe it, their instances merged.
func (s *Server) Protocols(ctx context.Context) map[string]any {
	out := map[string]any{}
	var names []string
	for _, svc := range s.registry().list {
		for _, p := range svc.Protocols {
			if !slices.Contains(names, p) {
				names = append(names, p)
			}
		}
	}
	for _, p := range names {
		if proto := s.protocol(ctx, p); proto != nil {
			out[p] = proto
		}
	}
	return out
}

// Protocol answers GET /_matrix/client/v3/thirdparty/protocol/{protocol}.
func (s *Server) Protocol(ctx context.Context, protocol string) (any, error) {
	if proto := s.protocol(ctx, protocol); proto != nil {
		return proto, nil
	}
	return nil, spec.NotFound("no application service provides protocol " + protocol)
}

// protocol asks each service declaring the protocol for its description
// (GET /_matrix/app/v1/thirdparty/protocol/{protocol}): the first answer is the base and
// the others' instances are added to it. Each instance gets an instance_id naming its
// service, as clients pass it back in /publicRooms. nil when no service answered.
func (s *Server) protocol(ctx context.Context, protocol string) map[string]any {
	var merged map[string]any
	var instances []any
	for _, svc := range s.registry().ForProtocol(protocol) {
		status, body, err := s.request(ctx, svc, http.MethodGet, "/_matrix/app/v1/thirdparty/protocol/"+url.PathEscape(protocol), nil, nil)
		if err != nil || status != http.StatusOK {
			s.log.Warn("application service protocol query failed", "appservice", svc.ID, "protocol", protocol, "status", status, "err", err)
			continue
		}
		var p map[string]any
		if json.Unmarshal(body, &p) != nil {
			continue
		}
		list, _ := p["instances"].([]any)
		for _, in := range list {
			if m, ok := in.(map[string]any); ok {
				if _, has := m["instance_id"]; !has {
					nid, _ := m["network_id"].(string)
					m["instance_id"] = svc.ID + "|" + nid
				}
				instances = append(instances, m)
			}
		}
		if merged == nil {
			merged = p
		}
	}
	if merged != nil {
		if instances == nil {
			instances = []any{}
		}
		merged["instances"] = instances
	}
	return merged
}

// ThirdPartyLookup answers GET /_matrix/client/v3/thirdparty/{kind}[/{protocol}] (kind is
// "location" or "user"): the query goes to the services declaring the protocol (to every
// service with a URL when there is none, the reverse lookups by alias or user ID), and their
// answers, arrays, are joined.
func (s *Server) ThirdPartyLookup(ctx context.Context, kind, protocol string, query url.Values) (any, error) {
	path := "/_matrix/app/v1/thirdparty/" + kind
	var services []*Service
	if protocol != "" {
		path += "/" + url.PathEscape(protocol)
		services = s.registry().ForProtocol(protocol)
		if len(services) == 0 {
			return nil, spec.NotFound("no application service provides protocol " + protocol)
		}
	} else {
		for _, svc := range s.registry().list {
			if svc.HasURL() {
				services = append(services, svc)
			}
		}
	}
	out := []json.RawMessage{}
	for _, svc := range services {
		status, body, err := s.request(ctx, svc, http.MethodGet, path, query, nil)
		if err != nil || status != http.StatusOK {
			if status != http.StatusNotFound {
				s.log.Warn("application service third-party lookup failed", "appservice", svc.ID, "path", path, "status", status, "err", err)
			}
			continue
		}
		var list []json.RawMessage
		if json.Unmarshal(body, &list) == nil {
			out = append(out, list...)
		}
	}
	return out, nil
}
