package federationapi

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// RemoteKeys asks other servers for their users' end-to-end keys, for a local user's
// /keys/query and /keys/claim (clientapi.RemoteKeys). The answers are returned as the
// remote server sent them: key objects are signed, so they must reach the client byte for
// byte, and gomatrixserverlib's typed responses re-encode them (and reject a whole answer
// over one key that is not base64).
type RemoteKeys struct {
	s *Server
}

// RemoteKeys returns the remote end-to-end key queries.
func (s *Server) RemoteKeys() *RemoteKeys { return &RemoteKeys{s: s} }

// QueryKeys asks server for the device and cross-signing keys of its users
// (POST /_matrix/federation/v1/user/keys/query): user ID -> device IDs, none for all.
func (k *RemoteKeys) QueryKeys(ctx context.Context, server spec.ServerName, deviceKeys map[string][]string) (json.RawMessage, error) {
	req := make(map[string][]string, len(deviceKeys))
	for userID, devs := range deviceKeys {
		if devs == nil {
			devs = []string{} // null is not a list of devices
		}
		req[userID] = devs
	}
	return k.post(ctx, server, "/_matrix/federation/v1/user/keys/query", map[string]any{"device_keys": req})
}

// ClaimKeys claims one-time keys of server's users' devices
// (POST /_matrix/federation/v1/user/keys/claim): user ID -> device ID -> algorithm.
func (k *RemoteKeys) ClaimKeys(ctx context.Context, server spec.ServerName, oneTimeKeys map[string]map[string]string) (json.RawMessage, error) {
	return k.post(ctx, server, "/_matrix/federation/v1/user/keys/claim", map[string]any{"one_time_keys": oneTimeKeys})
}

// post sends a signed POST with content to server and returns the response body.
func (k *RemoteKeys) post(ctx context.Context, server spec.ServerName, path string, content any) (json.RawMessage, error) {
	return k.s.postRaw(ctx, server, path, content)
}

// postRaw sends a signed POST with content to server and returns the response body as it
// came, so that what the client sees is what the server said.
func (s *Server) postRaw(ctx context.Context, server spec.ServerName, path string, content any) (json.RawMessage, error) {
	return s.signedRaw(ctx, "POST", server, path, content)
}

// signedRaw sends a signed request (content nil: none) to server and returns the response
// body as it came.
func (s *Server) signedRaw(ctx context.Context, method string, server spec.ServerName, path string, content any) (json.RawMessage, error) {
	cfg := s.cfg
	fr := fclient.NewFederationRequest(method, cfg.ServerName, server, path)
	if content != nil {
		if err := fr.SetContent(content); err != nil {
			return nil, err
		}
	}
	if err := fr.Sign(cfg.ServerName, cfg.KeyID, cfg.PrivateKey); err != nil {
		return nil, err
	}
	req, err := fr.HTTPRequest()
	if err != nil {
		return nil, err
	}
	var res json.RawMessage
	if err := s.client.fc.DoRequestAndParseResponse(ctx, req, &res); err != nil {
		return nil, fmt.Errorf("%s %s on %s: %w", method, path, server, err)
	}
	return res, nil
}
