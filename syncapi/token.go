package syncapi

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// Token is a /sync since-token: one position per stream. It is opaque to clients, and valid
// across restarts because every position but typing's is read from the database (typing
// notifications are ephemeral: a token from before a restart simply has nothing to add).
type Token struct {
	PDU         int64
	AccountData int64
	Receipts    int64
	Typing      int64
	ToDevice    int64
	DeviceLists int64
	Presence    int64
}

// tokenStreams is the order of the positions in an encoded token.
var tokenStreams = []storage.Stream{
	storage.StreamPDU, storage.StreamAccountData, storage.StreamReceipts, storage.StreamTyping,
	storage.StreamToDevice, storage.StreamDeviceLists, storage.StreamPresence,
}

// Get returns the position of one stream.
func (t *Token) Get(s storage.Stream) int64 { return *t.field(s) }

// Advance moves one stream forward to pos (never backwards).
func (t *Token) Advance(s storage.Stream, pos int64) {
	f := t.field(s)
	*f = max(*f, pos)
}

func (t *Token) field(s storage.Stream) *int64 {
	switch s {
	case storage.StreamPDU:
		return &t.PDU
	case storage.StreamAccountData:
		return &t.AccountData
	case storage.StreamReceipts:
		return &t.Receipts
	case storage.StreamTyping:
		return &t.Typing
	case storage.StreamToDevice:
		return &t.ToDevice
	case storage.StreamDeviceLists:
		return &t.DeviceLists
	case storage.StreamPresence:
		return &t.Presence
	}
	panic("unknown stream " + string(s))
}

// String encodes the token as "s" and the positions joined by "_".
func (t Token) String() string {
	var b strings.Builder
	b.WriteByte('s')
	for i, s := range tokenStreams {
		if i > 0 {
			b.WriteByte('_')
		}
		b.WriteString(strconv.FormatInt(t.Get(s), 10))
	}
	return b.String()
}

// ParseToken decodes a since-token. Positions missing at the end (tokens from older
// versions) are zero.
func ParseToken(s string) (Token, error) {
	var t Token
	body, ok := strings.CutPrefix(s, "s")
	if !ok {
		return t, spec.InvalidParam("invalid since token")
	}
	parts := strings.Split(body, "_")
	if len(parts) < 2 || len(parts) > len(tokenStreams) {
		return t, spec.InvalidParam("invalid since token")
	}
	for i, p := range parts {
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil || v < 0 {
			return t, spec.InvalidParam("invalid since token")
		}
		*t.field(tokenStreams[i]) = v
	}
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
