package federationapi

import (
	"context"
	"fmt"

	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// QueryKeys asks server for the device and cross-signing keys of its users
// (POST /_matrix/federation/v1/user/keys/query): user ID -> device IDs, none for all. It is
// how a local user's /keys/query reaches users of other servers (clientapi.RemoteKeys).
func (c *Client) QueryKeys(ctx context.Context, server spec.ServerName, deviceKeys map[string][]string) (fclient.RespQueryKeys, error) {
	res, err := c.fc.QueryKeys(ctx, c.origin, server, deviceKeys)
	if err != nil {
		return res, fmt.Errorf("query keys on %s: %w", server, err)
	}
	return res, nil
}

// ClaimKeys claims one-time keys of server's users' devices
// (POST /_matrix/federation/v1/user/keys/claim): user ID -> device ID -> algorithm.
func (c *Client) ClaimKeys(ctx context.Context, server spec.ServerName, oneTimeKeys map[string]map[string]string) (fclient.RespClaimKeys, error) {
	res, err := c.fc.ClaimKeys(ctx, c.origin, server, oneTimeKeys)
	if err != nil {
		return res, fmt.Errorf("claim keys on %s: %w", server, err)
	}
	return res, nil
}
