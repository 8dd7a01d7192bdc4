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
	s.deviceListChanged(r.Context(), dev.UserID, pos, dev.DeviceID)
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
// that the device_lists stream reached pos (0: nothing changed), and other servers sharing a
// room with userID that the devices changed (the named ones, or all when none is named).
// Call it after the commit.
func (s *Server) deviceListChanged(ctx context.Context, userID string, pos int64, deviceIDs ...string) {
	if pos == 0 {
		return
	}
	s.wakeDeviceLists(ctx, userID, pos)
	s.eduSink().DeviceListChanged(ctx, userID, deviceIDs)
}

// wakeDeviceLists tells the long-polls of userID and of everyone sharing a room with them
// that the device_lists stream reached pos.
func (s *Server) wakeDeviceLists(ctx context.Context, userID string, pos int64) {
	if s.waker == nil {
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
// Remote users' keys are asked of their servers, concurrently, for up to the request's
// timeout; a server that cannot answer is listed in failures.
func (s *Server) handleQueryKeys(r *http.Request) (any, error) {
	me := httputil.Device(r.Context()).UserID
	var req struct {
		DeviceKeys map[string][]string `json:"device_keys"`
		Timeout    *int64              `json:"timeout"`
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
	remote := map[string]map[string][]string{}
	for userID, deviceIDs := range req.DeviceKeys {
		server, local := s.userServer(userID)
		if server == "" {
			continue
		} else if !local {
			if remote[server] == nil {
				remote[server] = map[string][]string{}
			}
			remote[server][userID] = deviceIDs
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
	s.queryRemoteKeys(r.Context(), remote, keysTimeout(req.Timeout), &queriedKeys{
		devices: resp.DeviceKeys, master: resp.MasterKeys, selfSigning: resp.SelfSigningKeys, failures: resp.Failures,
	})
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

// remoteKeysFailure is the failures entry for a remote server when federation is off.
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
// of the algorithm, or when none is left its fallback key. Local claims run in one
// transaction, so a key is handed out once only; remote users' keys are claimed on their
// servers (failures as for /keys/query).
func (s *Server) handleClaimKeys(r *http.Request) (any, error) {
	var req struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
		Timeout     *int64                       `json:"timeout"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.OneTimeKeys == nil {
		return nil, spec.MissingParam("one_time_keys is required")
	}
	failures := map[string]any{}
	local := map[string]map[string]string{}
	remote := map[string]map[string]map[string]string{}
	for userID, devices := range req.OneTimeKeys {
		server, isLocal := s.userServer(userID)
		if server == "" {
			continue
		} else if !isLocal {
			if remote[server] == nil {
				remote[server] = map[string]map[string]string{}
			}
			remote[server][userID] = devices
			continue
		}
		local[userID] = devices
	}
	claimed, err := s.db.ClaimKeys(r.Context(), local)
	if err != nil {
		return nil, err
	}
	s.claimRemoteKeys(r.Context(), remote, keysTimeout(req.Timeout), claimed, failures)
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
