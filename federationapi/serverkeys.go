package federationapi

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// notaryFetchTimeout bounds fetching one server's keys for a notary request.
const notaryFetchTimeout = 15 * time.Second

// handleServerKeys handles GET /_matrix/key/v2/server: our current key, valid for
// KeyValidity from now, signed by itself.
func (s *Server) handleServerKeys(*http.Request) (any, error) {
	return s.ownKeyResponse()
}

// ownKeyResponse returns our signed key response. We have no old keys yet; old_verify_keys
// is required all the same.
func (s *Server) ownKeyResponse() (json.RawMessage, error) {
	fields := gomatrixserverlib.ServerKeyFields{
		ServerName: s.cfg.ServerName,
		VerifyKeys: map[gomatrixserverlib.KeyID]gomatrixserverlib.VerifyKey{
			s.cfg.KeyID: {Key: spec.Base64Bytes(s.cfg.PrivateKey.Public().(ed25519.PublicKey))},
		},
		OldVerifyKeys: map[gomatrixserverlib.KeyID]gomatrixserverlib.OldVerifyKey{},
		ValidUntilTS:  spec.AsTimestamp(s.cfg.Now().Add(s.cfg.KeyValidity)),
	}
	js, err := json.Marshal(fields)
	if err != nil {
		return nil, err
	}
	return gomatrixserverlib.SignJSON(string(s.cfg.ServerName), s.cfg.KeyID, s.cfg.PrivateKey, js)
}

// handleQueryKeysGet handles GET /_matrix/key/v2/query/{serverName}.
func (s *Server) handleQueryKeysGet(r *http.Request) (any, error) {
	server := spec.ServerName(httputil.PathVar(r, "serverName"))
	if _, _, ok := spec.ParseAndValidateServerName(server); !ok {
		return nil, spec.InvalidParam("invalid server name")
	}
	minValid := spec.AsTimestamp(s.cfg.Now())
	if v := r.URL.Query().Get("minimum_valid_until_ts"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, spec.InvalidParam("minimum_valid_until_ts must be a timestamp")
		}
		minValid = spec.Timestamp(n)
	}
	resp, err := s.notaryKeys(r.Context(), server, minValid)
	if err != nil {
		return nil, err
	}
	return map[string]any{"server_keys": resp}, nil
}

// handleQueryKeysPost handles POST /_matrix/key/v2/query. Key IDs in the criteria only
// raise minimum_valid_until_ts: the response carries all of a server's keys, which the spec
// allows.
func (s *Server) handleQueryKeysPost(r *http.Request) (any, error) {
	var req struct {
		ServerKeys map[spec.ServerName]map[gomatrixserverlib.KeyID]struct {
			MinimumValidUntilTS *int64 `json:"minimum_valid_until_ts"`
		} `json:"server_keys"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.ServerKeys == nil {
		return nil, spec.MissingParam("server_keys is required")
	}
	out := []json.RawMessage{}
	for server, criteria := range req.ServerKeys {
		if _, _, ok := spec.ParseAndValidateServerName(server); !ok {
			continue
		}
		minValid := spec.AsTimestamp(s.cfg.Now())
		for _, c := range criteria {
			if c.MinimumValidUntilTS != nil && spec.Timestamp(*c.MinimumValidUntilTS) > minValid {
				minValid = spec.Timestamp(*c.MinimumValidUntilTS)
			}
		}
		resp, err := s.notaryKeys(r.Context(), server, minValid)
		if err != nil {
			return nil, err
		}
		out = append(out, resp...)
	}
	return map[string]any{"server_keys": out}, nil
}

// notaryKeys returns server's key responses as a notary: its own signed response, with our
// signature added. A cached response is used while valid until minValid; otherwise the keys
// are fetched from the server, and when that fails a stale cached response is better than
// none. Nothing at all gives an empty list.
func (s *Server) notaryKeys(ctx context.Context, server spec.ServerName, minValid spec.Timestamp) ([]json.RawMessage, error) {
	if server == s.cfg.ServerName {
		own, err := s.ownKeyResponse()
		if err != nil {
			return nil, err
		}
		return []json.RawMessage{own}, nil
	}
	cached, err := s.keys.LatestServerKeyResponse(ctx, server)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	raw := cached
	if !validUntilAtLeast(cached, minValid) {
		fetchCtx, cancel := context.WithTimeout(ctx, notaryFetchTimeout)
		keys, err := s.fetcher.GetServerKeys(fetchCtx, server)
		cancel()
		if err == nil {
			if checks, _ := gomatrixserverlib.CheckKeys(server, s.cfg.Now(), keys); checks.AllChecksOK {
				raw = keys.Raw
			}
		}
	}
	if raw == nil {
		return []json.RawMessage{}, nil
	}
	signed, err := gomatrixserverlib.SignJSON(string(s.cfg.ServerName), s.cfg.KeyID, s.cfg.PrivateKey, raw)
	if err != nil {
		return nil, fmt.Errorf("sign key response of %s: %w", server, err)
	}
	return []json.RawMessage{signed}, nil
}

// validUntilAtLeast reports whether the key response raw is valid until ts or later.
func validUntilAtLeast(raw []byte, ts spec.Timestamp) bool {
	if raw == nil {
		return false
	}
	var keys gomatrixserverlib.ServerKeys
	return json.Unmarshal(raw, &keys) == nil && keys.ValidUntilTS >= ts
}
