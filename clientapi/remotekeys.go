package clientapi

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// RemoteKeys asks other servers for their users' end-to-end keys (federationapi.RemoteKeys),
// returning the body of their answer: key objects are signed and go to the client as they
// came. Without it (federation off) every remote server is listed in the failures of
// /keys/query and /keys/claim.
type RemoteKeys interface {
	QueryKeys(ctx context.Context, server spec.ServerName, deviceKeys map[string][]string) (json.RawMessage, error)
	ClaimKeys(ctx context.Context, server spec.ServerName, oneTimeKeys map[string]map[string]string) (json.RawMessage, error)
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
				// The cause stays in the log: a network error would tell an open port from a
				// closed one.
				failures[server] = map[string]any{"errcode": "M_UNKNOWN", "error": "the server could not be reached or failed"}
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
		body, err := s.remoteKeys.QueryKeys(ctx, spec.ServerName(server), asked)
		if err != nil {
			return err
		}
		var res struct {
			DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
			MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
			SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
		}
		if err := json.Unmarshal(body, &res); err != nil {
			return fmt.Errorf("keys query answer: %w", err)
		}
		mu.Lock()
		defer mu.Unlock()
		for userID, devs := range res.DeviceKeys {
			if _, ok := asked[userID]; !ok {
				continue
			}
			keys := map[string]json.RawMessage{}
			for deviceID, dk := range devs {
				if keyOwner(dk, "device_id") == [2]string{userID, deviceID} {
					keys[deviceID] = dk
				}
			}
			out.devices[userID] = keys
		}
		addCrossSigningKeys(out.master, res.MasterKeys, asked)
		addCrossSigningKeys(out.selfSigning, res.SelfSigningKeys, asked)
		return nil
	})
}

// addCrossSigningKeys adds to out the keys of the asked users, each under its own user ID.
func addCrossSigningKeys(out, keys map[string]json.RawMessage, asked map[string][]string) {
	for userID, key := range keys {
		if _, ok := asked[userID]; ok && keyOwner(key, "")[0] == userID {
			out[userID] = key
		}
	}
}

// keyOwner returns the user_id and the field idField (none when "") of a key object; empty
// strings when it is not an object.
func keyOwner(key json.RawMessage, idField string) [2]string {
	var obj map[string]json.RawMessage
	if json.Unmarshal(key, &obj) != nil {
		return [2]string{}
	}
	var out [2]string
	_ = json.Unmarshal(obj["user_id"], &out[0])
	if idField != "" {
		_ = json.Unmarshal(obj[idField], &out[1])
	}
	return out
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
		body, err := s.remoteKeys.ClaimKeys(ctx, spec.ServerName(server), asked)
		if err != nil {
			return err
		}
		var res struct {
			OneTimeKeys map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
		}
		if err := json.Unmarshal(body, &res); err != nil {
			return fmt.Errorf("keys claim answer: %w", err)
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
