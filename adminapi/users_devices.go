package adminapi

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

func deviceJSON(d *storage.Device) map[string]any {
	m := map[string]any{
		"device_id": d.DeviceID, "user_id": d.UserID, "last_seen_ts": d.LastSeenTS,
		"last_seen_ip": orNull(d.LastSeenIP), "last_seen_user_agent": orNull(d.LastSeenUserAgent), "dehydrated": false,
	}
	if d.DisplayName != "" {
		m["display_name"] = d.DisplayName
	}
	return m
}

// handleUserDevices handles GET /v2/users/{userId}/devices.
func (s *Server) handleUserDevices(r *http.Request) (any, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	devs, err := s.db.Devices(r.Context(), u.UserID)
	if err != nil {
		return nil, err
	}
	list := make([]map[string]any, 0, len(devs))
	for i := range devs {
		list = append(list, deviceJSON(&devs[i]))
	}
	return map[string]any{"devices": list, "total": len(list)}, nil
}

// handleCreateDevice handles POST /v2/users/{userId}/devices {device_id}: a device with no
// usable access token; nothing happens if it exists.
func (s *Server) handleCreateDevice(r *http.Request) (any, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		DeviceID string `json:"device_id"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.DeviceID == "" {
		return nil, spec.MissingParam("device_id is required")
	}
	if len(req.DeviceID) > 255 {
		return nil, spec.InvalidParam("device_id is too long")
	}
	if _, err := s.db.Device(r.Context(), u.UserID, req.DeviceID); err == nil {
		return struct{}{}, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	var pos int64
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		// The token of the new device is a random one nobody is told.
		d := storage.Device{UserID: u.UserID, DeviceID: req.DeviceID, CreatedTS: time.Now().UnixMilli()}
		if err := tx.UpsertDevice(r.Context(), d, httputil.HashToken(httputil.NewAccessToken())); err != nil {
			return err
		}
		var err error
		pos, err = tx.DeviceListChanged(r.Context(), u.UserID)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.deviceListChanged(r.Context(), u.UserID, pos, req.DeviceID)
	s.audit(r, "create device", "user_id", u.UserID, "device_id", req.DeviceID)
	return struct{}{}, nil
}

// pathDevice returns the device named in the path, 404 M_NOT_FOUND when unknown.
func (s *Server) pathDevice(r *http.Request) (*storage.Device, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	d, err := s.db.Device(r.Context(), u.UserID, httputil.PathVar(r, "deviceId"))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("device not found")
	}
	return d, err
}

// handleUserDevice handles GET /v2/users/{userId}/devices/{deviceId}.
func (s *Server) handleUserDevice(r *http.Request) (any, error) {
	d, err := s.pathDevice(r)
	if err != nil {
		return nil, err
	}
	return deviceJSON(d), nil
}

// handleRenameDevice handles PUT /v2/users/{userId}/devices/{deviceId} {display_name}.
func (s *Server) handleRenameDevice(r *http.Request) (any, error) {
	d, err := s.pathDevice(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		DisplayName *string `json:"display_name"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.DisplayName == nil {
		return struct{}{}, nil
	}
	if len(*req.DisplayName) > 100 {
		return nil, spec.InvalidParam("display_name is too long")
	}
	var pos int64
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		if err := tx.SetDeviceName(r.Context(), d.UserID, d.DeviceID, *req.DisplayName); err != nil {
			return err
		}
		var err error
		pos, err = tx.DeviceListChanged(r.Context(), d.UserID)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.deviceListChanged(r.Context(), d.UserID, pos, d.DeviceID)
	s.audit(r, "rename device", "user_id", d.UserID, "device_id", d.DeviceID)
	return struct{}{}, nil
}

// handleDeleteDevice handles DELETE /v2/users/{userId}/devices/{deviceId}; deleting a
// device that does not exist succeeds, as in Synapse.
func (s *Server) handleDeleteDevice(r *http.Request) (any, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	return s.deleteDevices(r, u.UserID, []string{httputil.PathVar(r, "deviceId")})
}

// handleDeleteDevices handles POST /v2/users/{userId}/delete_devices {devices}.
func (s *Server) handleDeleteDevices(r *http.Request) (any, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		Devices *[]string `json:"devices"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Devices == nil {
		return nil, spec.MissingParam("devices is required")
	}
	if len(*req.Devices) == 0 {
		return struct{}{}, nil
	}
	return s.deleteDevices(r, u.UserID, *req.Devices)
}

// deleteDevices removes the named devices of userID with their tokens, keys and pushers.
func (s *Server) deleteDevices(r *http.Request, userID string, ids []string) (any, error) {
	var pos int64
	err := s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		if err := tx.DeleteDevices(r.Context(), userID, ids...); err != nil {
			return err
		}
		var err error
		pos, err = tx.DeleteDeviceE2EE(r.Context(), userID, ids...)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.deviceListChanged(r.Context(), userID, pos, ids...)
	s.audit(r, "delete devices", "user_id", userID, "device_ids", ids)
	return struct{}{}, nil
}

// handleUserPushers handles GET /v1/users/{userId}/pushers.
func (s *Server) handleUserPushers(r *http.Request) (any, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	ps, err := s.db.Pushers(r.Context(), u.UserID)
	if err != nil {
		return nil, err
	}
	list := make([]map[string]any, 0, len(ps))
	for _, p := range ps {
		list = append(list, map[string]any{
			"app_display_name": p.AppDisplayName, "app_id": p.AppID, "data": json.RawMessage(p.Data),
			"device_display_name": p.DeviceDisplayName, "kind": p.Kind, "lang": p.Lang,
			"profile_tag": p.ProfileTag, "pushkey": p.PushKey, "pushkey_ts": p.PushKeyTS,
		})
	}
	return map[string]any{"pushers": list, "total": len(list)}, nil
}

// handleUserAccountData handles GET /v1/users/{userId}/accountdata.
func (s *Server) handleUserAccountData(r *http.Request) (any, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	all, err := s.db.AccountDataSince(r.Context(), u.UserID, 0, math.MaxInt64)
	if err != nil {
		return nil, err
	}
	global := map[string]json.RawMessage{}
	rooms := map[string]map[string]json.RawMessage{}
	for _, a := range all {
		if a.RoomID == "" {
			global[a.Type] = json.RawMessage(a.Content)
			continue
		}
		if rooms[a.RoomID] == nil {
			rooms[a.RoomID] = map[string]json.RawMessage{}
		}
		rooms[a.RoomID][a.Type] = json.RawMessage(a.Content)
	}
	return map[string]any{"account_data": map[string]any{"global": global, "rooms": rooms}}, nil
}

// whois is the answer of both whois endpoints: each device's one session, its one known
// connection being where, when and with which client it was last seen (recorded at most
// once a minute: storage.DB.DeviceSeen).
func (s *Server) whois(r *http.Request, userID string) (any, error) {
	devs, err := s.db.Devices(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	devices := map[string]any{}
	for _, d := range devs {
		conn := map[string]any{"ip": d.LastSeenIP, "last_seen": d.LastSeenTS, "user_agent": d.LastSeenUserAgent}
		devices[d.DeviceID] = map[string]any{"sessions": []any{map[string]any{"connections": []any{conn}}}}
	}
	return map[string]any{"user_id": userID, "devices": devices}, nil
}

// handleWhois handles GET /_synapse/admin/v1/whois/{userId}.
func (s *Server) handleWhois(r *http.Request) (any, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	return s.whois(r, u.UserID)
}
