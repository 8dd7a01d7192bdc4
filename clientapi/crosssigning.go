package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// publicKey returns the public key of a stored cross-signing key object ("" if it has none).
func publicKey(keyJSON string) string {
	var k crossSigningKey
	_ = json.Unmarshal([]byte(keyJSON), &k)
	for _, v := range k.Keys {
		return v
	}
	return ""
}

// parseCrossSigningKey checks a key of /keys/device_signing/upload: the requester's, for
// usage, with exactly one ed25519 key named after itself. It returns the key in canonical
// JSON and its public key.
func parseCrossSigningKey(raw json.RawMessage, userID, usage string) (string, string, error) {
	var k crossSigningKey
	if err := httputil.UnmarshalObject(raw, &k); err != nil {
		return "", "", err
	}
	if k.UserID != userID {
		return "", "", spec.InvalidParam(usage + " key: user_id must be the requesting user")
	}
	hasUsage := false
	for _, u := range k.Usage {
		hasUsage = hasUsage || u == usage
	}
	if !hasUsage {
		return "", "", spec.InvalidParam(usage + " key: usage must contain " + usage)
	}
	if len(k.Keys) != 1 {
		return "", "", spec.InvalidParam(usage + " key: keys must have exactly one entry")
	}
	var pub string
	for name, v := range k.Keys {
		if name != "ed25519:"+v || v == "" {
			return "", "", spec.InvalidParam(usage + " key: the key must be named ed25519:<public key>")
		}
		pub = v
	}
	c, err := canonicalKey(raw)
	return c, pub, err
}

// handleUploadCrossSigningKeys handles POST /keys/device_signing/upload. As cross_signing.yaml
// says, user-interactive auth (the password) is needed unless the user has no master key yet
// or the request repeats exactly the keys already stored. The self-signing and user-signing
// keys must be signed by the (new or current) master key.
func (s *Server) handleUploadCrossSigningKeys(r *http.Request) (any, error) {
	me := httputil.Device(r.Context()).UserID
	var req struct {
		MasterKey      json.RawMessage `json:"master_key"`
		SelfSigningKey json.RawMessage `json:"self_signing_key"`
		UserSigningKey json.RawMessage `json:"user_signing_key"`
		Auth           json.RawMessage `json:"auth"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	existing, err := s.db.CrossSigningKeys(r.Context(), me)
	if err != nil {
		return nil, err
	}
	type upload struct{ json, pub string }
	uploads := map[string]upload{}
	for typ, raw := range map[string]json.RawMessage{
		storage.KeyMaster: req.MasterKey, storage.KeySelfSigning: req.SelfSigningKey, storage.KeyUserSigning: req.UserSigningKey,
	} {
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		c, pub, err := parseCrossSigningKey(raw, me, typ)
		if err != nil {
			return nil, err
		}
		uploads[typ] = upload{c, pub}
	}
	same := uploads[storage.KeyMaster].json != "" && uploads[storage.KeyMaster].json == existing[storage.KeyMaster]
	for typ, u := range uploads {
		same = same && u.json == existing[typ]
	}
	if existing[storage.KeyMaster] != "" && !same && !appServiceDevices(r) {
		// Application services replace their users' keys without UIA (spec v1.17).
		if err := s.requireCrossSigningAuth(r, req.Auth); err != nil {
			return nil, err
		}
	}
	masterPub := publicKey(existing[storage.KeyMaster])
	if m, ok := uploads[storage.KeyMaster]; ok {
		masterPub = m.pub
	}
	if masterPub == "" {
		return nil, spec.MissingParam("no master key is available")
	}
	for typ, u := range uploads {
		if typ != storage.KeyMaster {
			if err := verifySignature([]byte(u.json), me, "ed25519:"+masterPub, masterPub); err != nil {
				return nil, invalidSignature(typ + " key is not signed by the master key: " + err.Error())
			}
		}
		if _, err := s.db.Device(r.Context(), me, u.pub); err == nil {
			return nil, spec.Forbidden("key ID in use by a device")
		}
	}
	var pos int64
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		changed := false
		for typ, u := range uploads {
			if u.json == existing[typ] {
				continue
			}
			if err := tx.SetCrossSigningKey(r.Context(), me, typ, u.json); err != nil {
				return err
			}
			changed = true
		}
		if changed {
			pos, err = tx.DeviceListChanged(r.Context(), me)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if pos > 0 {
		s.wakeDeviceLists(r.Context(), me, pos)
		s.eduSink().SigningKeysChanged(r.Context(), me)
	}
	return struct{}{}, nil
}

// handleUploadSignatures handles POST /keys/signatures/upload. Accepted are signatures by the
// requester of: their own devices with their self-signing key, their own master key with one
// of their devices, and another user's master key with their user-signing key. Each signed
// object must match the stored key apart from signatures; failures are per key.
func (s *Server) handleUploadSignatures(r *http.Request) (any, error) {
	me := httputil.Device(r.Context()).UserID
	var req map[string]map[string]json.RawMessage
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	mine, err := s.db.CrossSigningKeys(r.Context(), me)
	if err != nil {
		return nil, err
	}
	failures := map[string]map[string]any{}
	var accepted []storage.KeySignature
	for userID, objs := range req {
		for keyID, raw := range objs {
			sigs, err := s.checkSignatures(r.Context(), me, mine, userID, keyID, raw)
			var he *httputil.Error
			if errors.As(err, &he) {
				if failures[userID] == nil {
					failures[userID] = map[string]any{}
				}
				failures[userID][keyID] = map[string]string{"errcode": he.Code, "error": he.Msg}
				continue
			} else if err != nil {
				return nil, err
			}
			accepted = append(accepted, sigs...)
		}
	}
	var pos int64
	if len(accepted) > 0 {
		err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
			for _, sig := range accepted {
				if err := tx.AddKeySignature(r.Context(), sig); err != nil {
					return err
				}
			}
			// Signatures change what the signer's devices (and, for their own keys, everyone
			// sharing a room) see of the signer's keys.
			var err error
			pos, err = tx.DeviceListChanged(r.Context(), me)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	s.deviceListChanged(r.Context(), me, pos)
	return map[string]any{"failures": failures}, nil
}

// checkSignatures returns the acceptable signatures by me in raw, the signed key keyID of
// userID, or an *httputil.Error for the failures map.
func (s *Server) checkSignatures(ctx context.Context, me string, mine map[string]string, userID, keyID string, raw json.RawMessage) ([]storage.KeySignature, error) {
	// Which stored key is signed, and which of my keys may sign it.
	var stored string
	signers := map[string]string{} // signer key ID -> public key
	switch {
	case userID == me && keyID == publicKey(mine[storage.KeyMaster]) && keyID != "":
		stored = mine[storage.KeyMaster]
		keys, err := s.db.DeviceKeys(ctx, me, nil)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			var dk deviceKeysJSON
			_ = json.Unmarshal([]byte(k.KeyJSON), &dk)
			signers["ed25519:"+k.DeviceID] = dk.Keys["ed25519:"+k.DeviceID]
		}
	case userID == me:
		keys, err := s.db.DeviceKeys(ctx, me, []string{keyID})
		if err != nil {
			return nil, err
		}
		if len(keys) == 0 {
			return nil, httputil.Errorf(http.StatusNotFound, "M_NOT_FOUND", "unknown device or key %s", keyID)
		}
		stored = keys[0].KeyJSON
		if pub := publicKey(mine[storage.KeySelfSigning]); pub != "" {
			signers["ed25519:"+pub] = pub
		}
	default:
		if _, local := s.userServer(userID); !local {
			return nil, httputil.Errorf(http.StatusBadRequest, "M_UNKNOWN", "signing remote users' keys is not available")
		}
		theirs, err := s.db.CrossSigningKeys(ctx, userID)
		if err != nil {
			return nil, err
		}
		if keyID == "" || keyID != publicKey(theirs[storage.KeyMaster]) {
			return nil, httputil.Errorf(http.StatusNotFound, "M_NOT_FOUND", "%s is not the master key of %s", keyID, userID)
		}
		stored = theirs[storage.KeyMaster]
		if pub := publicKey(mine[storage.KeyUserSigning]); pub != "" {
			signers["ed25519:"+pub] = pub
		}
	}
	// The object must be the stored key apart from signatures.
	var sent, have map[string]json.RawMessage
	if err := json.Unmarshal(raw, &sent); err != nil {
		return nil, httputil.Errorf(http.StatusBadRequest, "M_BAD_JSON", "the signed key must be an object")
	}
	_ = json.Unmarshal([]byte(stored), &have)
	var sigs map[string]map[string]string
	_ = json.Unmarshal(sent["signatures"], &sigs)
	for _, m := range []map[string]json.RawMessage{sent, have} {
		delete(m, "signatures")
		delete(m, "unsigned")
	}
	a, _ := json.Marshal(sent)
	b, _ := json.Marshal(have)
	if ca, err := gomatrixserverlib.CanonicalJSON(a); err != nil || string(ca) != string(gomatrixserverlib.CanonicalJSONAssumeValid(b)) {
		return nil, httputil.Errorf(http.StatusBadRequest, "M_INVALID_PARAM", "the signed object does not match the stored key")
	}
	var out []storage.KeySignature
	for signerKeyID, sig := range sigs[me] {
		pub, ok := signers[signerKeyID]
		if !ok {
			continue
		}
		if err := verifySignature(raw, me, signerKeyID, pub); err != nil {
			return nil, invalidSignature(err.Error())
		}
		out = append(out, storage.KeySignature{TargetUserID: userID, TargetKeyID: keyID, SignerUserID: me, SignerKeyID: signerKeyID, Signature: sig})
	}
	if len(out) == 0 {
		return nil, invalidSignature("no signature by a key that may sign this key")
	}
	return out, nil
}
