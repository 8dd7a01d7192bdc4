package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

type deviceJSON struct {
	DeviceID    string `json:"device_id"`
	DisplayName string `json:"display_name,omitempty"`
	LastSeenIP  string `json:"last_seen_ip,omitempty"`
	LastSeenTS  int64  `json:"last_seen_ts,omitempty"`
}

func toDeviceJSON(d storage.Device) deviceJSON {
	return deviceJSON{DeviceID: d.DeviceID, DisplayName: d.DisplayName, LastSeenIP: d.LastSeenIP, LastSeenTS: d.LastSeenTS}
}

// handleDevices handles GET /devices.
func (s *Server) handleDevices(r *http.Request) (any, error) {
	devs, err := s.db.Devices(r.Context(), httputil.Device(r.Context()).UserID)
	if err != nil {
		return nil, err
	}
	out := make([]deviceJSON, 0, len(devs))
	for _, d := range devs {
		out = append(out, toDeviceJSON(d))
	}
	return map[string]any{"devices": out}, nil
}

// handleDevice handles GET /devices/{deviceId}.
func (s *Server) handleDevice(r *http.Request) (any, error) {
	d, err := s.db.Device(r.Context(), httputil.Device(r.Context()).UserID, httputil.PathVar(r, "deviceId"))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("unknown device")
	} else if err != nil {
		return nil, err
	}
	return toDeviceJSON(*d), nil
}

// handleRenameDevice handles PUT /devices/{deviceId}.
func (s *Server) handleRenameDevice(r *http.Request) (any, error) {
	var req struct {
		DisplayName *string `json:"display_name"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	dev := httputil.Device(r.Context())
	if appServiceDevices(r) {
		if _, err := s.db.Device(r.Context(), dev.UserID, httputil.PathVar(r, "deviceId")); errors.Is(err, storage.ErrNotFound) {
			return s.createAppServiceDevice(r, req.DisplayName)
		}
	}
	if req.DisplayName == nil {
		return struct{}{}, nil
	}
	err := s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		return tx.SetDeviceName(r.Context(), dev.UserID, httputil.PathVar(r, "deviceId"), *req.DisplayName)
	})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("unknown device")
	}
	return struct{}{}, err
}

// handleDeleteDevice handles DELETE /devices/{deviceId} (UIA).
func (s *Server) handleDeleteDevice(r *http.Request) (any, error) {
	return s.deleteDevices(r, []string{httputil.PathVar(r, "deviceId")}, true)
}

// handleDeleteDevices handles POST /delete_devices (UIA).
func (s *Server) handleDeleteDevices(r *http.Request) (any, error) {
	return s.deleteDevices(r, nil, false)
}

func (s *Server) deleteDevices(r *http.Request, ids []string, single bool) (any, error) {
	dev := httputil.Device(r.Context())
	var req struct {
		Devices []string        `json:"devices"`
		Auth    json.RawMessage `json:"auth"`
	}
	body, err := httputil.ReadBody(r)
	if err != nil {
		return nil, err
	}
	if len(body) > 0 {
		if err := httputil.UnmarshalObject(body, &req); err != nil {
			return nil, err
		}
	}
	if !single {
		if req.Devices == nil {
			return nil, spec.MissingParam("devices is required")
		}
		ids = req.Devices
	}
	if single {
		if _, err := s.db.Device(r.Context(), dev.UserID, ids[0]); errors.Is(err, storage.ErrNotFound) {
			return nil, spec.NotFound("unknown device")
		}
	}
	if appServiceDevices(r) {
		// Application services manage their users' devices without UIA (MSC4190).
	} else if err := s.requirePassword(uiaContext(r), dev.UserID, req.Auth); err != nil {
		return nil, err
	}
	var pos int64
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		var err error
		pos, err = removeDevices(r.Context(), tx, dev.UserID, ids...)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.deviceListChanged(r.Context(), dev.UserID, pos, ids...)
	return struct{}{}, nil
}

// removeDevices deletes the named devices of userID (all of them when none is named) with
// their end-to-end keys and pending to-device messages, and returns the device_lists
// position of the change for deviceListChanged after the commit.
func removeDevices(ctx context.Context, tx *storage.Tx, userID string, deviceIDs ...string) (int64, error) {
	if err := tx.DeleteDevices(ctx, userID, deviceIDs...); err != nil {
		return 0, err
	}
	return tx.DeleteDeviceE2EE(ctx, userID, deviceIDs...)
}
