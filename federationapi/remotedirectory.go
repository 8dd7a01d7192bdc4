package federationapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/matrix-org/gomatrix"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// RemoteDirectory answers the client API's questions about other servers' directories:
// their room aliases and their public room lists (clientapi.RemoteDirectory).
type RemoteDirectory struct{ s *Server }

// RemoteDirectory returns the client API's view of other servers' directories.
func (s *Server) RemoteDirectory() *RemoteDirectory { return &RemoteDirectory{s: s} }

// QueryAlias resolves an alias of another server (GET /query/directory on it).
func (d *RemoteDirectory) QueryAlias(ctx context.Context, alias string) (string, []string, error) {
	roomID, servers, err := (&remote{s: d.s}).QueryAlias(ctx, alias)
	if err != nil {
		return "", nil, err
	}
	out := make([]string, 0, len(servers))
	for _, srv := range servers {
		out = append(out, string(srv))
	}
	return roomID, out, nil
}

// PublicRooms asks server for a page of its public room directory
// (POST /_matrix/federation/v1/publicRooms) and returns its answer as it came.
func (d *RemoteDirectory) PublicRooms(ctx context.Context, server string, req any) (json.RawMessage, error) {
	res, err := d.s.postRaw(ctx, spec.ServerName(server), "/_matrix/federation/v1/publicRooms", req)
	if err != nil {
		var he gomatrix.HTTPError
		if errors.As(err, &he) && he.Code == http.StatusNotFound {
			return nil, spec.NotFound("the server has no public room directory")
		}
		return nil, d.s.unreachable(spec.ServerName(server), "public rooms query", err)
	}
	return res, nil
}
