package federationapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/matrix-org/gomatrix"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// QueryAlias resolves a room alias of another server with GET /query/directory on that
// server. An unknown alias is M_NOT_FOUND.
func (r *remote) QueryAlias(ctx context.Context, alias string) (string, []spec.ServerName, error) {
	i := strings.IndexByte(alias, ':')
	if i < 0 {
		return "", nil, spec.InvalidParam("invalid room alias")
	}
	server := spec.ServerName(alias[i+1:])
	res, err := r.s.client.fc.LookupRoomAlias(ctx, r.s.cfg.ServerName, server, alias)
	if err != nil {
		var he gomatrix.HTTPError
		if errors.As(err, &he) && he.Code == http.StatusNotFound {
			return "", nil, spec.NotFound("room alias not found")
		}
		// Not found, as the spec's GET /directory/room/{roomAlias} and joins by alias know no
		// other answer; the cause is for the log only (see unreachable).
		r.s.log.Warn("alias query failed", "destination", server, "err", err)
		return "", nil, spec.NotFound("could not resolve the alias on " + string(server))
	}
	return res.RoomID, append(res.Servers, server), nil
}
