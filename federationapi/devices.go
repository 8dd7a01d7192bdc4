package federationapi

import (
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// handleUserDevices handles GET /_matrix/federation/v1/user/devices/{userId}: a local user's
// devices with their keys, the user's master and self-signing keys, and the device list
// stream position the list is current at. Device display names are not shared with other
// servers (Synapse's default too): they often name people and places.
func (s *Server) handleUserDevices(r *http.Request) (any, error) {
	userID := httputil.PathVar(r, "userId")
	if !s.isLocalUser(userID) {
		return nil, spec.InvalidParam("userId is not a user of this server")
	}
	// The position first: a change after it is announced with a later one.
	pos, err := s.db.StreamPos(r.Context(), string(storage.StreamDeviceLists))
	if err != nil {
		return nil, err
	}
	devs, err := s.db.Devices(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	keys, err := s.userKeys(r.Context(), userID, nil)
	if err != nil {
		return nil, err
	}
	// keys is required per device: a device that has not uploaded keys is left out.
	devices := []map[string]any{}
	for _, d := range devs {
		if k, ok := keys.devices[d.DeviceID]; ok {
			devices = append(devices, map[string]any{"device_id": d.DeviceID, "keys": k})
		}
	}
	resp := map[string]any{"user_id": userID, "stream_id": pos, "devices": devices}
	if keys.master != nil {
		resp["master_key"] = keys.master
	}
	if keys.selfSigning != nil {
		resp["self_signing_key"] = keys.selfSigning
	}
	return resp, nil
}
