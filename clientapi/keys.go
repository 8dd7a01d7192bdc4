package clientapi

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// keyRoutes lists the end-to-end encryption key endpoints (/keys/*, /room_keys/*), following
// the client-server API's "End-to-End Encryption" module.
func (s *Server) keyRoutes() []route {
	const get, post, put, del = http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete
	return []route{
		{post, "/keys/upload", true, false, s.handleUploadKeys},
		{post, "/keys/query", true, false, s.handleQueryKeys},
		{post, "/keys/claim", true, false, s.handleClaimKeys},
		{get, "/keys/changes", true, false, s.handleKeyChanges},
		{post, "/keys/device_signing/upload", true, false, s.handleUploadCrossSigningKeys},
		{post, "/keys/signatures/upload", true, false, s.handleUploadSignatures},

		{post, "/room_keys/version", true, false, s.handleCreateBackupVersion},
		{get, "/room_keys/version", true, false, s.handleGetBackupVersion},
		{get, "/room_keys/version/{backupVersion}", true, false, s.handleGetBackupVersion},
		{put, "/room_keys/version/{backupVersion}", true, false, s.handleUpdateBackupVersion},
		{del, "/room_keys/version/{backupVersion}", true, false, s.handleDeleteBackupVersion},
		{get, "/room_keys/keys", true, false, s.handleGetBackupKeys},
		{get, "/room_keys/keys/{roomId}", true, false, s.handleGetBackupKeys},
		{get, "/room_keys/keys/{roomId}/{sessionId}", true, false, s.handleGetBackupKeys},
		{put, "/room_keys/keys", true, false, s.handlePutBackupKeys},
		{put, "/room_keys/keys/{roomId}", true, false, s.handlePutBackupKeys},
		{put, "/room_keys/keys/{roomId}/{sessionId}", true, false, s.handlePutBackupKeys},
		{del, "/room_keys/keys", true, false, s.handleDeleteBackupKeys},
		{del, "/room_keys/keys/{roomId}", true, false, s.handleDeleteBackupKeys},
		{del, "/room_keys/keys/{roomId}/{sessionId}", true, false, s.handleDeleteBackupKeys},
	}
}

// handleUploadKeys handles POST /keys/upload: the device's identity keys (which must be its
// own and self-signed), one-time keys and fallback keys.
func (s *Server) handleUploadKeys(r *http.Request) (any, error) {
	dev := httputil.Device(r.Context())
	var req struct {
		DeviceKeys   json.RawMessage            `json:"device_keys"`
		OneTimeKeys  map[string]json.RawMessage `json:"one_time_keys"`
		FallbackKeys map[string]json.RawMessage `json:"fallback_keys"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	var deviceKeys string
	if len(req.DeviceKeys) > 0 && string(req.DeviceKeys) != "null" {
		var err error
		if deviceKeys, err = checkDeviceKeys(req.DeviceKeys, dev.UserID, dev.DeviceID); err != nil {
			return nil, err
		}
	}
	otks, err := parseKeyMap(req.OneTimeKeys)
	if err != nil {
		return nil, err
	}
	fallbacks, err := parseKeyMap(req.FallbackKeys)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, k := range fallbacks {
		if seen[k.Algorithm] {
			return nil, spec.InvalidParam("at most one fallback key per algorithm")
		}
		seen[k.Algorithm] = true
	}
	var pos int64
	var counts map[string]int
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		if deviceKeys != "" {
			changed, err := tx.SetDeviceKeys(r.Context(), dev.UserID, dev.DeviceID, deviceKeys)
			if err != nil {
				return err
			}
			if changed {
				if pos, err = tx.DeviceListChanged(r.Context(), dev.UserID); err != nil {
					return err
				}
			}
		}
		if err := tx.AddOneTimeKeys(r.Context(), dev.UserID, dev.DeviceID, otks); err != nil {
			return err
		}
		if err := tx.SetFallbackKeys(r.Context(), dev.UserID, dev.DeviceID, fallbacks); err != nil {
			return err
		}
		counts, err = tx.OneTimeKeyCounts(r.Context(), dev.UserID, dev.DeviceID)
		return err
	})
	if errors.Is(err, storage.ErrKeyExists) {
		return nil, spec.InvalidParam(err.Error())
	} else if err != nil {
		return nil, err
	}
	s.deviceListChanged(r.Context(), dev.UserID, pos)
	if _, ok := counts["signed_curve25519"]; !ok {
		counts["signed_curve25519"] = 0
	}
	return map[string]any{"one_time_key_counts": counts}, nil
}

// deviceKeysJSON is the part of a DeviceKeys object the server checks.
type deviceKeysJSON struct {
	UserID     string            `json:"user_id"`
	DeviceID   string            `json:"device_id"`
	Algorithms []string          `json:"algorithms"`
	Keys       map[string]string `json:"keys"`
}

// checkDeviceKeys checks that raw is the identity key object of the requesting device,
// signed with its own ed25519 key, and returns it in canonical JSON without "unsigned".
func checkDeviceKeys(raw json.RawMessage, userID, deviceID string) (string, error) {
	var dk deviceKeysJSON
	if err := httputil.UnmarshalObject(raw, &dk); err != nil {
		return "", err
	}
	if dk.UserID != userID || dk.DeviceID != deviceID {
		return "", spec.InvalidParam("device_keys must be the keys of the requesting user and device")
	}
	if len(dk.Algorithms) == 0 || len(dk.Keys) == 0 {
		return "", spec.MissingParam("device_keys needs algorithms and keys")
	}
	keyID := "ed25519:" + deviceID
	if err := verifySignature(raw, userID, keyID, dk.Keys[keyID]); err != nil {
		return "", invalidSignature("device_keys: " + err.Error())
	}
	return canonicalKey(raw)
}

// canonicalKey returns a key object in canonical JSON without its "unsigned" field, which
// servers add and signatures do not cover.
func canonicalKey(raw json.RawMessage) (string, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return "", spec.BadJSON("a key must be a JSON object")
	}
	delete(obj, "unsigned")
	b, err := json.Marshal(obj)
	if err != nil {
		return "", err
	}
	c, err := gomatrixserverlib.CanonicalJSON(b)
	if err != nil {
		return "", spec.BadJSON(err.Error())
	}
	return string(c), nil
}

// verifySignature checks the signature of signer's key keyID ("ed25519:...") on the JSON
// object raw, with the unpadded base64 public key pub.
func verifySignature(raw []byte, signer, keyID, pub string) error {
	key, err := decodeBase64(pub)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return errors.New("no valid ed25519 public key for " + keyID)
	}
	return gomatrixserverlib.VerifyJSON(signer, gomatrixserverlib.KeyID(keyID), ed25519.PublicKey(key), raw)
}

func decodeBase64(s string) ([]byte, error) {
	if b, err := base64.RawStdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.StdEncoding.DecodeString(s)
}

func invalidSignature(msg string) error {
	return &httputil.Error{Status: http.StatusBadRequest, Code: "M_INVALID_SIGNATURE", Msg: msg}
}

// parseKeyMap turns a map of "<algorithm>:<key_id>" to key (one_time_keys, fallback_keys)
// into keys, each in canonical JSON.
func parseKeyMap(m map[string]json.RawMessage) ([]storage.OneTimeKey, error) {
	out := make([]storage.OneTimeKey, 0, len(m))
	for name, raw := range m {
		alg, id, ok := strings.Cut(name, ":")
		if !ok || alg == "" || id == "" {
			return nil, spec.InvalidParam("key names must be <algorithm>:<key_id>: " + name)
		}
		c, err := gomatrixserverlib.CanonicalJSON(raw)
		if err != nil || (c[0] != '{' && c[0] != '"') {
			return nil, spec.BadJSON("key " + name + " must be an object or a string")
		}
		out = append(out, storage.OneTimeKey{Algorithm: alg, KeyID: id, KeyJSON: string(c)})
	}
	return out, nil
}

// deviceListChanged tells the long-polls of userID and of everyone sharing a room with them
// that the device_lists stream reached pos (0: nothing changed). Call it after the commit.
func (s *Server) deviceListChanged(ctx context.Context, userID string, pos int64) {
	if pos == 0 || s.waker == nil {
		return
	}
	users, err := s.db.UsersSharingRooms(ctx, userID)
	if err != nil {
		s.log.Error("device list change: cannot list users to wake", "user_id", userID, "err", err)
	}
	s.waker.Wake(storage.StreamDeviceLists, pos, append(users, userID))
}

// handleQueryKeys handles POST /keys/query: device keys with their display names, and the
// cross-signing keys of the requested users, with the signatures the requester may see.
// Remote users are the federation seam: until then their servers are listed in failures.
func (s *Server) handleQueryKeys(r *http.Request) (any, error) {
	me := httputil.Device(r.Context()).UserID
	var req struct {
		DeviceKeys map[string][]string `json:"device_keys"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.DeviceKeys == nil {
		return nil, spec.MissingParam("device_keys is required")
	}
	resp := struct {
		DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
		MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
		SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
		UserSigningKeys map[string]json.RawMessage            `json:"user_signing_keys"`
		Failures        map[string]any                        `json:"failures"`
	}{map[string]map[string]json.RawMessage{}, map[string]json.RawMessage{}, map[string]json.RawMessage{}, map[string]json.RawMessage{}, map[string]any{}}
	for userID, deviceIDs := range req.DeviceKeys {
		server, local := s.userServer(userID)
		if server == "" {
			continue
		} else if !local {
			resp.Failures[server] = remoteKeysFailure()
			continue
		}
		sigs, err := s.db.KeySignatures(r.Context(), userID)
		if err != nil {
			return nil, err
		}
		visible := sigs[:0]
		for _, sig := range sigs {
			// Signatures by the key owner and by the requester (user-signing signatures
			// are private to their signer).
			if sig.SignerUserID == userID || sig.SignerUserID == me {
				visible = append(visible, sig)
			}
		}
		keys, err := s.db.DeviceKeys(r.Context(), userID, deviceIDs)
		if err != nil {
			return nil, err
		}
		devs := map[string]json.RawMessage{}
		for _, k := range keys {
			if devs[k.DeviceID], err = withSignatures(k.KeyJSON, k.DeviceID, visible, map[string]any{"device_display_name": k.DisplayName}); err != nil {
				return nil, err
			}
		}
		resp.DeviceKeys[userID] = devs
		cs, err := s.db.CrossSigningKeys(r.Context(), userID)
		if err != nil {
			return nil, err
		}
		for typ, out := range map[string]map[string]json.RawMessage{
			storage.KeyMaster: resp.MasterKeys, storage.KeySelfSigning: resp.SelfSigningKeys, storage.KeyUserSigning: resp.UserSigningKeys,
		} {
			if cs[typ] == "" || (typ == storage.KeyUserSigning && userID != me) {
				continue
			}
			if out[userID], err = withSignatures(cs[typ], publicKey(cs[typ]), visible, nil); err != nil {
				return nil, err
			}
		}
	}
	return resp, nil
}

// userServer returns the server name of a user ID ("" when it is not one) and whether it is
// this server.
func (s *Server) userServer(userID string) (string, bool) {
	if !strings.HasPrefix(userID, "@") {
		return "", false
	}
	_, server, ok := strings.Cut(userID, ":")
	if !ok || server == "" {
		return "", false
	}
	return server, server == s.cfg.ServerName
}

// remoteKeysFailure is the failures entry for a remote server while key queries and claims
// over federation are not implemented; this is where they will go.
func remoteKeysFailure() map[string]any {
	return map[string]any{"errcode": "M_UNKNOWN", "error": "federation is not available"}
}

// withSignatures returns the stored key object keyJSON with the uploaded signatures of
// targetKeyID merged into its "signatures", and unsigned set when not nil.
func withSignatures(keyJSON, targetKeyID string, sigs []storage.KeySignature, unsigned map[string]any) (json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(keyJSON), &obj); err != nil {
		return nil, err
	}
	merged := map[string]map[string]string{}
	if raw, ok := obj["signatures"]; ok {
		_ = json.Unmarshal(raw, &merged)
	}
	found := false
	for _, sig := range sigs {
		if sig.TargetKeyID != targetKeyID {
			continue
		}
		if merged[sig.SignerUserID] == nil {
			merged[sig.SignerUserID] = map[string]string{}
		}
		merged[sig.SignerUserID][sig.SignerKeyID] = sig.Signature
		found = true
	}
	if found {
		b, err := json.Marshal(merged)
		if err != nil {
			return nil, err
		}
		obj["signatures"] = b
	}
	if unsigned != nil {
		b, err := json.Marshal(unsigned)
		if err != nil {
			return nil, err
		}
		obj["unsigned"] = b
	}
	return json.Marshal(obj)
}

// handleClaimKeys handles POST /keys/claim: for each requested device the oldest one-time key
// of the algorithm, or when none is left its fallback key. Claims run in one transaction, so
// a key is handed out once only.
func (s *Server) handleClaimKeys(r *http.Request) (any, error) {
	var req struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.OneTimeKeys == nil {
		return nil, spec.MissingParam("one_time_keys is required")
	}
	failures := map[string]any{}
	local := map[string]map[string]string{}
	for userID, devices := range req.OneTimeKeys {
		server, isLocal := s.userServer(userID)
		if server == "" {
			continue
		} else if !isLocal {
			failures[server] = remoteKeysFailure()
			continue
		}
		local[userID] = devices
	}
	claimed, err := s.db.ClaimKeys(r.Context(), local)
	if err != nil {
		return nil, err
	}
	return map[string]any{"one_time_keys": claimed, "failures": failures}, nil
}

// handleKeyChanges handles GET /keys/changes?from=&to= with two /sync tokens.
func (s *Server) handleKeyChanges(r *http.Request) (any, error) {
	me := httputil.Device(r.Context()).UserID
	q := r.URL.Query()
	if q.Get("from") == "" || q.Get("to") == "" {
		return nil, spec.MissingParam("from and to are required")
	}
	fromPDU, fromDL, err := syncTokenPositions(q.Get("from"))
	if err != nil {
		return nil, err
	}
	toPDU, toDL, err := syncTokenPositions(q.Get("to"))
	if err != nil {
		return nil, err
	}
	changed, left, err := s.db.DeviceListChanges(r.Context(), me, fromPDU, toPDU, fromDL, toDL)
	if err != nil {
		return nil, err
	}
	return map[string]any{"changed": changed, "left": left}, nil
}

// syncTokenPositions reads the room event and device_lists positions of a /sync token:
// "s" and the stream positions joined by "_", the room events first and device lists sixth
// (syncapi/token.go; a missing position is zero). clientapi must not import syncapi.
func syncTokenPositions(tok string) (pdu, deviceLists int64, err error) {
	body, ok := strings.CutPrefix(tok, "s")
	parts := strings.Split(body, "_")
	if !ok || len(parts) < 2 {
		return 0, 0, spec.InvalidParam("invalid sync token")
	}
	var pos [6]int64
	for i := 0; i < len(parts) && i < len(pos); i++ {
		if pos[i], err = strconv.ParseInt(parts[i], 10, 64); err != nil || pos[i] < 0 {
			return 0, 0, spec.InvalidParam("invalid sync token")
		}
	}
	return pos[0], pos[5], nil
}

// crossSigningKey is the part of a CrossSigningKey object the server checks.
type crossSigningKey struct {
	UserID string            `json:"user_id"`
	Usage  []string          `json:"usage"`
	Keys   map[string]string `json:"keys"`
}

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
	if existing[storage.KeyMaster] != "" && !same {
		if err := s.requirePassword(r.Context(), me, req.Auth); err != nil {
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
	s.deviceListChanged(r.Context(), me, pos)
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
