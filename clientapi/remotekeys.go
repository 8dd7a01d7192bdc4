package clientapi

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// RemoteKeys asks other servers for their users' end-to-end keys: the federation API's
// client (federationapi.Client). Without it (federation off) every remote server is listed
// in the failures of /keys/query and /keys/claim.
type RemoteKeys interface {
	QueryKeys(ctx context.Context, server spec.ServerName, deviceKeys map[string][]string) (fclient.RespQueryKeys, error)
	ClaimKeys(ctx context.Context, server spec.ServerName, oneTimeKeys map[string]map[string]string) (fclient.RespClaimKeys, error)
}

// SetRemoteKeys makes /keys/query and /keys/claim ask other servers for their users' keys.
func (s *Server) SetRemoteKeys(rk RemoteKeys) { s.remoteKeys = rk }

// defaultKeysTimeout is how long /keys/query and /keys/claim wait for other servers when
// the client gives no timeout, the spec's default.
const defaultKeysTimeout = 10 * time.Second

// keysTimeout returns the wait for other servers of a request's timeout field (ms).
func keysTimeout(ms *int64) time.Duration {
	if ms == nil || *ms <= 0 {
		return defaultKeysTimeout
	}
	return min(time.Duration(*ms)*time.Millisecond, time.Minute)
}

// queriedKeys is the part of a /keys/query response that remote servers fill in.
type queriedKeys struct {
	devices             map[string]map[string]json.RawMessage
	master, selfSigning map[string]json.RawMessage
	failures            map[string]any
}

// eachServer runs fn for every server concurrently, each with ctx limited to timeout, and
// returns when all are done. A server that fn fails for is recorded in failures.
func (s *Server) eachServer(ctx context.Context, servers []string, timeout time.Duration, failures map[string]any, fn func(ctx context.Context, server string, mu *sync.Mutex) error) {
	var mu sync.Mutex // guards failures and what fn writes
	var wg sync.WaitGroup
	for _, server := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			if err := fn(ctx, server, &mu); err != nil {
				s.log.Warn("remote end-to-end keys", "destination", server, "err", err)
				mu.Lock()
				failures[server] = map[string]any{"errcode": "M_UNKNOWN", "error": "the server could not be reached or failed: " + err.Error()}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// queryRemoteKeys asks each server of byServer (server -> user ID -> device IDs) for its
// users' keys and adds them to out. What a server returns about users or devices that were
// not asked of it, or under the wrong name, is left out.
func (s *Server) queryRemoteKeys(ctx context.Context, byServer map[string]map[string][]string, timeout time.Duration, out *queriedKeys) {
	if s.remoteKeys == nil {
		for server := range byServer {
			out.failures[server] = remoteKeysFailure()
		}
		return
	}
	servers := make([]string, 0, len(byServer))
	for server := range byServer {
		servers = append(servers, server)
	}
	s.eachServer(ctx, servers, timeout, out.failures, func(ctx context.Context, server string, mu *sync.Mutex) error {
		asked := byServer[server]
		res, err := s.remoteKeys.QueryKeys(ctx, spec.ServerName(server), asked)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for userID, devs := range res.DeviceKeys {
			if _, ok := asked[userID]; !ok {
				continue
			}
			keys := map[string]json.RawMessage{}
			for deviceID, dk := range devs {
				if dk.UserID != userID || dk.DeviceID != deviceID {
					continue
				}
				js, err := withoutNulls(dk.RespUserDeviceKeys, dk.Unsigned)
				if err != nil {
					return err
				}
				keys[deviceID] = js
			}
			out.devices[userID] = keys
		}
		if err := addCrossSigningKeys(out.master, res.MasterKeys, asked); err != nil {
			return err
		}
		return addCrossSigningKeys(out.selfSigning, res.SelfSigningKeys, asked)
	})
}

// addCrossSigningKeys adds to out the keys of the asked users, each under its own user ID.
func addCrossSigningKeys(out map[string]json.RawMessage, keys map[string]fclient.CrossSigningKey, asked map[string][]string) error {
	for userID, key := range keys {
		if _, ok := asked[userID]; !ok || key.UserID != userID {
			continue
		}
		js, err := withoutNulls(key, nil)
		if err != nil {
			return err
		}
		out[userID] = js
	}
	return nil
}

// claimRemoteKeys claims one-time keys on each server of byServer (server -> user ID ->
// device ID -> algorithm) and adds them to claimed.
func (s *Server) claimRemoteKeys(ctx context.Context, byServer map[string]map[string]map[string]string, timeout time.Duration, claimed map[string]map[string]map[string]json.RawMessage, failures map[string]any) {
	if s.remoteKeys == nil {
		for server := range byServer {
			failures[server] = remoteKeysFailure()
		}
		return
	}
	servers := make([]string, 0, len(byServer))
	for server := range byServer {
		servers = append(servers, server)
	}
	s.eachServer(ctx, servers, timeout, failures, func(ctx context.Context, server string, mu *sync.Mutex) error {
		asked := byServer[server]
		res, err := s.remoteKeys.ClaimKeys(ctx, spec.ServerName(server), asked)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for userID, devs := range res.OneTimeKeys {
			if _, ok := asked[userID]; ok {
				claimed[userID] = devs
			}
		}
		return nil
	})
}

// withoutNulls returns v as a JSON object without its null fields (gomatrixserverlib's key
// types write absent signatures as null), with unsigned added when not nil.
func withoutNulls(v any, unsigned map[string]any) (json.RawMessage, error) {
	js, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(js, &obj); err != nil {
		return nil, err
	}
	for k, f := range obj {
		if string(f) == "null" {
			delete(obj, k)
		}
	}
	if unsigned != nil {
		if obj["unsigned"], err = json.Marshal(unsigned); err != nil {
			return nil, err
		}
	}
	return json.Marshal(obj)
}
