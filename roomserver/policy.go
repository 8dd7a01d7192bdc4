package roomserver

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/sjson"

	"github.com/lattice-chat/lattice/storage"
)

// mRoomPolicy is the state event that names a room's policy server (spec v1.18, "Policy
// Servers").
const mRoomPolicy = "m.room.policy"

// policyKeyID is the key ID of every policy server signature.
const policyKeyID gomatrixserverlib.KeyID = "ed25519:policy_server"

// policyServer is the policy server a room uses.
type policyServer struct {
	name spec.ServerName
	key  ed25519.PublicKey
}

// roomPolicyServer returns the policy server room r uses, if any: its current state has a
// valid m.room.policy with an empty state key (a string via and an ed25519 public key), and
// the server named by via has a user joined to the room.
func (s *Server) roomPolicyServer(ctx context.Context, r *room) (*policyServer, bool) {
	content := s.StateContent(ctx, r.state, storage.StateKey{Type: mRoomPolicy})
	via, _ := content["via"].(string)
	keys, _ := content["public_keys"].(map[string]any)
	keyB64, _ := keys["ed25519"].(string)
	if via == "" || keyB64 == "" {
		return nil, false
	}
	key, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(keyB64, "="))
	if err != nil || len(key) != ed25519.PublicKeySize {
		return nil, false
	}
	for u, m := range r.members {
		if m == spec.Join && serverOf(u) == via {
			return &policyServer{name: spec.ServerName(via), key: key}, true
		}
	}
	return nil, false
}

// needsPolicy reports whether pdu is checked by a policy server: every event but the
// m.room.policy state event with an empty state key.
func needsPolicy(pdu gomatrixserverlib.PDU) bool {
	return !(pdu.Type() == mRoomPolicy && pdu.StateKey() != nil && *pdu.StateKey() == "")
}

// hasPolicySignature reports whether pdu carries a valid signature of the policy server.
func hasPolicySignature(ver gomatrixserverlib.IRoomVersion, ps *policyServer, pdu gomatrixserverlib.PDU) bool {
	redacted, err := ver.RedactEventJSON(pdu.JSON())
	if err != nil {
		return false
	}
	return gomatrixserverlib.VerifyJSON(string(ps.name), policyKeyID, ps.key, redacted) == nil
}

// errPolicyUnreachable answers a client whose event could not be checked by the room's
// policy server.
var errPolicyUnreachable = spec.MatrixError{ErrCode: "M_UNKNOWN", Err: "the room's policy server could not be reached"}

// policySigned asks the room's policy server to sign pdu and returns pdu with the signature,
// checked against the key in the room's state. A refusal is returned as the policy server
// worded it.
func (s *Server) policySigned(ctx context.Context, r *room, ps *policyServer, pdu gomatrixserverlib.PDU) (gomatrixserverlib.PDU, error) {
	sig, err := s.remote.PolicySign(ctx, ps.name, pdu)
	if err != nil {
		var me spec.MatrixError
		if errors.As(err, &me) {
			return nil, me
		}
		s.log.Warn("policy server not reached", "policy_server", ps.name, "room_id", r.id, "err", err)
		return nil, errPolicyUnreachable
	}
	path := "signatures." + escapeJSONPath(string(ps.name)) + "." + escapeJSONPath(string(policyKeyID))
	raw, err := sjson.SetBytes(pdu.JSON(), path, sig)
	if err != nil {
		return nil, err
	}
	signed, err := r.version.NewEventFromTrustedJSON(raw, false)
	if err != nil {
		return nil, fmt.Errorf("policy server signature: %w", err)
	}
	if !hasPolicySignature(r.version, ps, signed) {
		return nil, spec.Forbidden("the room's policy server gave a signature that does not verify")
	}
	return signed, nil
}

// escapeJSONPath escapes a key for an sjson path (server names have dots and colons).
func escapeJSONPath(key string) string {
	return strings.NewReplacer(".", `\.`, ":", `\:`, "*", `\*`, "?", `\?`).Replace(key)
}

// policyRecommends reports whether a received event is recommended for inclusion: the room
// uses no policy server, or the event has a valid signature of it (asking the policy server
// for one when it has not). An event not recommended is soft-failed.
func (s *Server) policyRecommends(ctx context.Context, r *room, pdu gomatrixserverlib.PDU) (gomatrixserverlib.PDU, bool) {
	ps, ok := s.roomPolicyServer(ctx, r)
	if !ok || !needsPolicy(pdu) || hasPolicySignature(r.version, ps, pdu) {
		return pdu, true
	}
	if s.remote == nil {
		return pdu, false
	}
	signed, err := s.policySigned(ctx, r, ps, pdu)
	if err != nil {
		return pdu, false
	}
	return signed, true
}

// policySignatures is the answer of POST /_matrix/policy/v1/sign: server -> key ID -> signature.
type policySignatures map[string]map[string]string

// PolicySignature returns the policy server's signature in an answer of /sign.
func PolicySignature(answer json.RawMessage, server spec.ServerName) (string, error) {
	var sigs policySignatures
	if err := json.Unmarshal(answer, &sigs); err != nil {
		return "", fmt.Errorf("policy server answer: %w", err)
	}
	sig := sigs[string(server)][string(policyKeyID)]
	if sig == "" {
		return "", fmt.Errorf("policy server answer has no %s signature of %s", policyKeyID, server)
	}
	return sig, nil
}
