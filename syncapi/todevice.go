package syncapi

import (
	"context"
	"encoding/json"

	"github.com/lattice-chat/lattice/storage"
)

// toDeviceLimit caps the to-device messages of one /sync response; the rest follow in the
// next one.
const toDeviceLimit = 100

// syncToDevice fills the to-device messages of the requesting device (send_to_device.md).
// A message is deleted only once the device syncs with a since-token at or past its position,
// so a response lost on the way is delivered again when the client retries its old token.
// When more messages wait than the cap, next_batch stops at the last one delivered.
func (s *Server) syncToDevice(ctx context.Context, req syncRequest, since, to Token, resp *syncResponse, memberships []storage.Membership) error {
	userID, deviceID := req.viewer.UserID, req.viewer.DeviceID
	if req.since != nil && since.ToDevice > 0 {
		// Check on the reader first: most syncs have nothing to acknowledge and need no write.
		acked, err := s.db.HasToDeviceMessagesUpTo(ctx, userID, deviceID, since.ToDevice)
		if err != nil {
			return err
		}
		if acked {
			err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
				return tx.DeleteToDeviceMessages(ctx, userID, deviceID, since.ToDevice)
			})
			if err != nil {
				return err
			}
		}
	}
	if to.ToDevice <= since.ToDevice {
		return nil
	}
	msgs, err := s.db.ToDeviceMessages(ctx, userID, deviceID, since.ToDevice, to.ToDevice, toDeviceLimit)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		resp.ToDevice.Events = append(resp.ToDevice.Events, map[string]any{
			"type": m.Type, "sender": m.Sender, "content": json.RawMessage(m.Content),
		})
	}
	if len(msgs) == toDeviceLimit {
		next, err := ParseToken(resp.NextBatch)
		if err != nil {
			return err
		}
		next.ToDevice = msgs[len(msgs)-1].StreamPos
		resp.NextBatch = next.String()
	}
	return nil
}
