package roomserver

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// Sticky events (MSC4354) are message events with a top-level sticky object whose
// duration_ms says how long /sync must deliver them to every member, past the timeline limit.
// Until the MSC is merged the key is msc4354_sticky (its unstable prefix); gomatrixserverlib
// reads both forms and computes the end of stickiness (PDU.StickyEndTime).

// MaxStickyMS is the longest valid sticky duration: one hour (MSC4354, "Proposal").
const MaxStickyMS = 3600000

// stickyKey is the unstable name of the top-level sticky object (MSC4354, "Unstable Prefix").
const stickyKey = "msc4354_sticky"

// SendStickyMessage sends a message event like SendMessage, made sticky for durationMS
// milliseconds, which the caller has checked is within [0, MaxStickyMS].
func (s *Server) SendStickyMessage(ctx context.Context, from Sender, roomID, evType string, content json.RawMessage, txnID string, durationMS int64) (string, error) {
	req := eventRequest{Sender: from.UserID, Type: evType, Content: content, TxnDevice: from.DeviceID, TxnID: txnID, TS: from.TS, StickyMS: &durationMS}
	return s.sendMessage(ctx, roomID, req)
}

// stickyUntil returns when pdu, received at received, stops being sticky in Unix ms; 0 when
// it is not sticky or was not sticky any more on arrival. Per MSC4354 the stickiness starts
// at min(received, origin_server_ts) and lasts min(duration_ms, one hour).
func stickyUntil(pdu gomatrixserverlib.PDU, received time.Time) int64 {
	end := pdu.StickyEndTime(received)
	if end.IsZero() || !end.After(received) {
		return 0
	}
	return end.UnixMilli()
}

// withSticky returns pdu, a local event just built and signed, with the sticky object added
// at its top level, hashed and signed again. gomatrixserverlib's builder has no field for it.
// The key is not protected from redaction, so the redacted form that is signed (and, from
// room version 3, the event ID) does not change; the content hash covers it.
func (s *Server) withSticky(ver gomatrixserverlib.IRoomVersion, pdu gomatrixserverlib.PDU, durationMS int64) (gomatrixserverlib.PDU, error) {
	js, err := sjson.SetBytes(pdu.JSON(), stickyKey, map[string]int64{"duration_ms": durationMS})
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"signatures", "hashes", "unsigned"} {
		if js, err = sjson.DeleteBytes(js, k); err != nil {
			return nil, err
		}
	}
	canonical, err := gomatrixserverlib.CanonicalJSON(js)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(canonical)
	if js, err = sjson.SetBytes(js, "hashes", map[string]string{"sha256": base64.RawStdEncoding.EncodeToString(sum[:])}); err != nil {
		return nil, err
	}
	redacted, err := ver.RedactEventJSON(js)
	if err != nil {
		return nil, err
	}
	signed, err := gomatrixserverlib.SignJSON(string(s.cfg.ServerName), s.cfg.KeyID, s.cfg.PrivateKey, redacted)
	if err != nil {
		return nil, err
	}
	if js, err = sjson.SetRawBytes(js, "signatures", []byte(gjson.GetBytes(signed, "signatures").Raw)); err != nil {
		return nil, err
	}
	if js, err = gomatrixserverlib.EnforcedCanonicalJSON(js, ver.Version()); err != nil {
		return nil, err
	}
	out, err := ver.NewEventFromTrustedJSON(js, false)
	if err != nil {
		return nil, fmt.Errorf("sticky event: %w", err)
	}
	return out, nil
}

// stickyRemaining returns how many ms an event with the given sticky objects (stable and
// unstable name) and origin_server_ts stays sticky after now, for the client's
// unsigned.msc4354_sticky_duration_ttl_ms; false when it is not sticky (any more). The start
// is taken as origin_server_ts, which is min(received, origin_server_ts) for every event but
// one from a server whose clock runs ahead; /sync's sticky section uses the exact end.
func stickyRemaining(stable, unstable json.RawMessage, originTS, now int64) (int64, bool) {
	dur := gjson.GetBytes(stable, "duration_ms")
	if dur.Int() <= 0 {
		dur = gjson.GetBytes(unstable, "duration_ms")
	}
	if dur.Type != gjson.Number || dur.Int() <= 0 {
		return 0, false
	}
	end := originTS + min(dur.Int(), MaxStickyMS)
	if end <= now {
		return 0, false
	}
	return end - now, true
}
