package syncapi

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// Token is a /sync since-token: one position per stream. It is opaque to clients, and valid
// across restarts because every position is read from the database.
type Token struct {
	PDU         int64
	AccountData int64
}

// String encodes the token as "s<pdu>_<account_data>".
func (t Token) String() string {
	return fmt.Sprintf("s%d_%d", t.PDU, t.AccountData)
}

// ParseToken decodes a since-token.
func ParseToken(s string) (Token, error) {
	var t Token
	body, ok := strings.CutPrefix(s, "s")
	if !ok {
		return t, spec.InvalidParam("invalid since token")
	}
	parts := strings.Split(body, "_")
	vals := make([]int64, len(parts))
	for i, p := range parts {
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil || v < 0 {
			return t, spec.InvalidParam("invalid since token")
		}
		vals[i] = v
	}
	if len(vals) < 2 {
		return t, spec.InvalidParam("invalid since token")
	}
	t.PDU, t.AccountData = vals[0], vals[1]
	return t, nil
}

// topoToken encodes a position in a room's topological order for /messages.
func topoToken(p storage.TopoPos) string {
	return fmt.Sprintf("t%d_%d", p.Depth, p.NID)
}

// parseTopoToken decodes "t<depth>_<nid>".
func parseTopoToken(s string) (storage.TopoPos, bool) {
	body, ok := strings.CutPrefix(s, "t")
	if !ok {
		return storage.TopoPos{}, false
	}
	d, n, ok := strings.Cut(body, "_")
	if !ok {
		return storage.TopoPos{}, false
	}
	depth, err1 := strconv.ParseInt(d, 10, 64)
	nid, err2 := strconv.ParseInt(n, 10, 64)
	if err1 != nil || err2 != nil {
		return storage.TopoPos{}, false
	}
	return storage.TopoPos{Depth: depth, NID: nid}, true
}
