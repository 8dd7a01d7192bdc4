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
	if req.since != nil && (to.PDU > since.PDU || to.DeviceLists > since.DeviceLists) {
		changed, left, err := s.db.DeviceListChanges(ctx, userID, since.PDU, to.PDU, since.DeviceLists, to.DeviceLists)
		if err != nil {
			return err
		}
		resp.DeviceLists.Changed = append(resp.DeviceLists.Changed, changed...)
		resp.DeviceLists.Left = append(resp.DeviceLists.Left, left...)
	}
	counts, err := s.db.OneTimeKeyCounts(ctx, userID, deviceID)
	if err != nil {
		return err
	}
	for alg, n := range counts {
		resp.DeviceOneTimeKeysCount[alg] = n
	}
	unused, err := s.db.UnusedFallbackKeyTypes(ctx, userID, deviceID)
	if err != nil {
		return err
	}
	resp.DeviceUnusedFallbackKeyTypes = append([]string{}, unused...)
	return nil
}
