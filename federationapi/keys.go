package federationapi

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// handleUserKeysQuery handles POST /_matrix/federation/v1/user/keys/query: the device keys
// and the master and self-signing keys of local users, with the signatures their owners
// uploaded. Users of other servers are left out.
func (s *Server) handleUserKeysQuery(r *http.Request) (any, error) {
	var req struct {
		DeviceKeys map[string][]string `json:"device_keys"`
	}
	if err := httputil.UnmarshalObject(request(r.Context()).Content(), &req); err != nil {
		return nil, err
	}
	if req.DeviceKeys == nil {
		return nil, spec.MissingParam("device_keys is required")
	}
	resp := struct {
		DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
		MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
		SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
	}{map[string]map[string]json.RawMessage{}, map[string]json.RawMessage{}, map[string]json.RawMessage{}}
	for userID, deviceIDs := range req.DeviceKeys {
		if !s.isLocalUser(userID) {
			continue
		}
		keys, err := s.userKeys(r.Context(), userID, deviceIDs)
		if err != nil {
			return nil, err
		}
		resp.DeviceKeys[userID] = keys.devices
		if keys.master != nil {
			resp.MasterKeys[userID] = keys.master
		}
		if keys.selfSigning != nil {
			resp.SelfSigningKeys[userID] = keys.selfSigning
		}
	}
	return resp, nil
}

// userKeys is what other servers may see of a user's end-to-end keys.
type userKeys struct {
	devices             map[string]json.RawMessage // device ID -> device keys
	master, selfSigning json.RawMessage            // nil when not uploaded
}

// userKeys returns the keys of the user's devices (all when deviceIDs is empty) and the
// user's master and self-signing keys, each with the signatures the user made. Signatures
// by other users (user-signing) are private to their signer and not sent.
func (s *Server) userKeys(ctx context.Context, userID string, deviceIDs []string) (*userKeys, error) {
	sigs, err := s.db.KeySignatures(ctx, userID)
	if err != nil {
		return nil, err
	}
	own := sigs[:0]
	for _, sig := range sigs {
		if sig.SignerUserID == userID {
			own = append(own, sig)
		}
	}
	keys, err := s.db.DeviceKeys(ctx, userID, deviceIDs)
	if err != nil {
		return nil, err
	}
	out := &userKeys{devices: map[string]json.RawMessage{}}
	for _, k := range keys {
		if out.devices[k.DeviceID], err = withSignatures(k.KeyJSON, k.DeviceID, own); err != nil {
			return nil, err
		}
	}
	cs, err := s.db.CrossSigningKeys(ctx, userID)
	if err != nil {
		return nil, err
	}
	if js := cs[storage.KeyMaster]; js != "" {
		if out.master, err = withSignatures(js, publicKeyOf(js), own); err != nil {
			return nil, err
		}
	}
	if js := cs[storage.KeySelfSigning]; js != "" {
		if out.selfSigning, err = withSignatures(js, publicKeyOf(js), own); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// withSignatures returns the stored key object keyJSON with the uploaded signatures of
// targetKeyID (a device ID, or a cross-signing key's public key) merged into "signatures".
func withSignatures(keyJSON, targetKeyID string, sigs []storage.KeySignature) (json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(keyJSON), &obj); err != nil {
		return nil, err
	}
	merged := map[string]map[string]string{}
	if raw, ok := obj["signatures"]; ok {
		_ = json.Unmarshal(raw, &merged)
	}
	for _, sig := range sigs {
		if sig.TargetKeyID != targetKeyID {
			continue
		}
		if merged[sig.SignerUserID] == nil {
			merged[sig.SignerUserID] = map[string]string{}
		}
		merged[sig.SignerUserID][sig.SignerKeyID] = sig.Signature
	}
	if len(merged) > 0 {
		b, err := json.Marshal(merged)
		if err != nil {
			return nil, err
		}
		obj["signatures"] = b
	}
	return json.Marshal(obj)
}

// publicKeyOf returns the (only) public key of a cross-signing key object, the ID its
// signatures are stored under.
func publicKeyOf(keyJSON string) string {
	var k struct {
		Keys map[string]string `json:"keys"`
	}
	_ = json.Unmarshal([]byte(keyJSON), &k)
	for _, v := range k.Keys {
		return v
	}
	return ""
}

// handleUserKeysClaim handles POST /_matrix/federation/v1/user/keys/claim: for each
// requested device of a local user, its oldest one-time key of the algorithm, or its
// fallback key when none is left. The claims run in one transaction, so that a key is
// handed out once only.
func (s *Server) handleUserKeysClaim(r *http.Request) (any, error) {
	var req struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
	}
	if err := httputil.UnmarshalObject(request(r.Context()).Content(), &req); err != nil {
		return nil, err
	}
	if req.OneTimeKeys == nil {
		return nil, spec.MissingParam("one_time_keys is required")
	}
	local := map[string]map[string]string{}
	for userID, devices := range req.OneTimeKeys {
		if s.isLocalUser(userID) {
			local[userID] = devices
		}
	}
	claimed, err := s.db.ClaimKeys(r.Context(), local)
	if err != nil {
		return nil, err
	}
	return map[string]any{"one_time_keys": claimed}, nil
}
