package syncapi

import (
	"context"

	"github.com/lattice-chat/lattice/storage"
)

// syncDeviceLists fills device_lists (on incremental syncs only: the End-to-End Encryption
// module's "Extensions to /sync") and the one-time and fallback key counts of the syncing
// device. changed has the users sharing a room with the requester, or the requester, whose
// devices or keys changed, and those who started sharing a room; left those who no longer
// share any (storage.DeviceListChanges).
func (s *Server) syncDeviceLists(ctx context.Context, req syncRequest, since, to Token, resp *syncResponse, memberships []storage.Membership) error {
	userID, deviceID := req.viewer.UserID, req.viewer.DeviceID
	// Joins and leaves in the user's rooms since the token are in this response (timeline or
	// state of a room, or a left room); without any, and with no device change on the
	// stream, there is nothing to look up.
	if req.since != nil && (to.DeviceLists > since.DeviceLists || (to.PDU > since.PDU && membershipChanged(resp))) {
		changed, left, err := s.db.DeviceListChanges(ctx, userID, since.PDU, to.PDU, since.DeviceLists, to.DeviceLists)
		if err != nil {
			return err
		}
		resp.DeviceLists.Changed = append(resp.DeviceLists.Changed, changed...)
		resp.DeviceLists.Left = append(resp.DeviceLists.Left, left...)
	}
	counts, unused, err := s.db.DeviceKeyCounts(ctx, userID, deviceID)
	if err != nil {
		return err
	}
	for alg, n := range counts {
		resp.DeviceOneTimeKeysCount[alg] = n
	}
	resp.DeviceUnusedFallbackKeyTypes = unused
	return nil
}

// membershipChanged reports whether the response carries a membership event or a left room.
func membershipChanged(resp *syncResponse) bool {
	if len(resp.Rooms.Leave) > 0 {
		return true
	}
	for _, jr := range resp.Rooms.Join {
		if jr.membersChanged {
			return true
		}
	}
	return false
}
