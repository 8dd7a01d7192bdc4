package syncapi

import (
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

// KnownStream reports whether s is one of the streams of a token.
func KnownStream(s storage.Stream) bool {
	for _, k := range tokenStreams {
		if k == s {
			return true
		}
	}
	return false
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

// pageToken encodes a point in a room's history for /messages (storage.PagePos.Token).
func pageToken(p storage.PagePos) string { return p.Token() }

// topoToken encodes a topological position.
func topoToken(p storage.TopoPos) string { return storage.Plain(p).Token() }

// parsePageToken decodes a pageToken.
func parsePageToken(s string) (storage.PagePos, bool) { return storage.ParsePageToken(s) }

// streamPointOf returns the stream position a /messages token stands just after, for the
// endpoints that read the room in stream order (/relations, /members?at=): a split point's
// bound is where the /sync timeline it comes from began; a topological position is taken as
// the point just before its event in stream order.
func streamPointOf(p storage.PagePos) int64 {
	if p.Split() {
		return p.Bound - 1
	}
	return p.Late.NID - 1
}
