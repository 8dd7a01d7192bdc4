package clientapi

import (
	"context"
	"encoding/json"

	"github.com/lattice-chat/lattice/storage"
)

// EDUSink tells other servers about local users' ephemeral changes: the federation API's
// outbound EDUs. The handlers call it after their change is committed, except QueueToDevice,
// which queues inside the handler's transaction and returns the wake-up to call after the
// commit. Failures of the ephemeral ones are the sink's to log: the local change stands.
type EDUSink interface {
	Typing(ctx context.Context, roomID, userID string, typing bool)
	Receipt(ctx context.Context, roomID, userID, receiptType, eventID, threadID string, ts int64)
	Presence(ctx context.Context, userID string)
	// DeviceListChanged announces the named devices of userID (none named: all of them).
	DeviceListChanged(ctx context.Context, userID string, deviceIDs []string)
	SigningKeysChanged(ctx context.Context, userID string)
	QueueToDevice(ctx context.Context, tx *storage.Tx, sender, evType string, messages map[string]map[string]json.RawMessage) (func(), error)
}

// SetEDUSink makes the client API tell other servers about ephemeral changes. Without it
// (federation off) nothing leaves this server.
func (s *Server) SetEDUSink(sink EDUSink) { s.edus = sink }

// eduSink returns the EDU sink, one that drops everything when none is set.
func (s *Server) eduSink() EDUSink {
	if s.edus == nil {
		return noEDUs{}
	}
	return s.edus
}

// noEDUs is the EDU sink of a server without federation.
type noEDUs struct{}

func (noEDUs) Typing(context.Context, string, string, bool)                           {}
func (noEDUs) Receipt(context.Context, string, string, string, string, string, int64) {}
func (noEDUs) Presence(context.Context, string)                                       {}
func (noEDUs) DeviceListChanged(context.Context, string, []string)                    {}
func (noEDUs) SigningKeysChanged(context.Context, string)                             {}
func (noEDUs) QueueToDevice(context.Context, *storage.Tx, string, string, map[string]map[string]json.RawMessage) (func(), error) {
	return func() {}, nil
}
