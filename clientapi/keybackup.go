package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// Server-side key backups (key_backup.yaml; the End-to-End Encryption module's "Server-side
// key backups"). Keys can be written only to the current (newest, not deleted) version.

// backupVersionResponse is the body of GET /room_keys/version[/{backupVersion}].
type backupVersionResponse struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Count     int64           `json:"count"`
	ETag      string          `json:"etag"`
	Version   string          `json:"version"`
}

// backupUpdateResponse is RoomKeysUpdateResponse.
type backupUpdateResponse struct {
	ETag  string `json:"etag"`
	Count int64  `json:"count"`
}

// keyBackupData is KeyBackupData; the pointers tell a missing field from a zero one.
type keyBackupData struct {
	FirstMessageIndex *int64          `json:"first_message_index"`
	ForwardedCount    *int64          `json:"forwarded_count"`
	IsVerified        *bool           `json:"is_verified"`
	SessionData       json.RawMessage `json:"session_data"`
}

type roomKeyBackup struct {
	Sessions map[string]keyBackupData `json:"sessions"`
}

func unknownBackup() error { return spec.NotFound("unknown backup version") }

// handleCreateBackupVersion handles POST /room_keys/version.
func (s *Server) handleCreateBackupVersion(r *http.Request) (any, error) {
	me := httputil.Device(r.Context()).UserID
	var req struct {
		Algorithm string          `json:"algorithm"`
		AuthData  json.RawMessage `json:"auth_data"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Algorithm == "" || !isObject(req.AuthData) {
		return nil, spec.MissingParam("algorithm and auth_data (an object) are required")
	}
	var version int64
	var err error
	for range 3 { // a concurrent creation may take the same number
		err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
			version, err = tx.CreateKeyBackupVersion(r.Context(), me, req.Algorithm, string(req.AuthData))
			return err
		})
		if !errors.Is(err, storage.ErrConflict) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return map[string]string{"version": strconv.FormatInt(version, 10)}, nil
}

// backupVersion returns the user's backup version named name, or the current one when name
// is empty; deleted versions are not found.
func (s *Server) backupVersion(r *http.Request, name string) (*storage.KeyBackupVersion, error) {
	me := httputil.Device(r.Context()).UserID
	var v *storage.KeyBackupVersion
	var err error
	if name == "" {
		v, err = s.db.CurrentKeyBackupVersion(r.Context(), me)
	} else if n, perr := strconv.ParseInt(name, 10, 64); perr != nil {
		return nil, unknownBackup()
	} else {
		v, err = s.db.KeyBackupVersion(r.Context(), me, n)
	}
	if errors.Is(err, storage.ErrNotFound) || (err == nil && v.Deleted) {
		return nil, unknownBackup()
	}
	return v, err
}

// queryVersion returns the backup version named by the version query parameter of the
// /room_keys/keys endpoints, which is required.
func (s *Server) queryVersion(r *http.Request) (*storage.KeyBackupVersion, error) {
	name := r.URL.Query().Get("version")
	if name == "" {
		return nil, spec.MissingParam("version is required")
	}
	return s.backupVersion(r, name)
}

// handleGetBackupVersion handles GET /room_keys/version and /room_keys/version/{backupVersion}.
func (s *Server) handleGetBackupVersion(r *http.Request) (any, error) {
	v, err := s.backupVersion(r, httputil.PathVar(r, "backupVersion"))
	if err != nil {
		return nil, err
	}
	count, err := s.db.CountBackupSessions(r.Context(), v.UserID, v.Version)
	if err != nil {
		return nil, err
	}
	return backupVersionResponse{Algorithm: v.Algorithm, AuthData: json.RawMessage(v.AuthData), Count: count,
		ETag: strconv.FormatInt(v.ETag, 10), Version: strconv.FormatInt(v.Version, 10)}, nil
}

// handleUpdateBackupVersion handles PUT /room_keys/version/{backupVersion}: only auth_data changes.
func (s *Server) handleUpdateBackupVersion(r *http.Request) (any, error) {
	var req struct {
		Algorithm string          `json:"algorithm"`
		AuthData  json.RawMessage `json:"auth_data"`
		Version   *string         `json:"version"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	v, err := s.backupVersion(r, httputil.PathVar(r, "backupVersion"))
	if err != nil {
		return nil, err
	}
	switch {
	case req.Algorithm == "" || !isObject(req.AuthData):
		return nil, spec.MissingParam("algorithm and auth_data (an object) are required")
	case req.Algorithm != v.Algorithm:
		return nil, spec.InvalidParam("algorithm does not match")
	case req.Version != nil && *req.Version != strconv.FormatInt(v.Version, 10):
		return nil, spec.InvalidParam("version does not match")
	}
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		return tx.SetKeyBackupAuthData(r.Context(), v.UserID, v.Version, string(req.AuthData))
	})
	return struct{}{}, err
}

// handleDeleteBackupVersion handles DELETE /room_keys/version/{backupVersion}; deleting a deleted
// version succeeds.
func (s *Server) handleDeleteBackupVersion(r *http.Request) (any, error) {
	me := httputil.Device(r.Context()).UserID
	n, err := strconv.ParseInt(httputil.PathVar(r, "backupVersion"), 10, 64)
	if err != nil {
		return nil, unknownBackup()
	}
	v, err := s.db.KeyBackupVersion(r.Context(), me, n)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, unknownBackup()
	} else if err != nil {
		return nil, err
	}
	if v.Deleted {
		return struct{}{}, nil
	}
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error { return tx.DeleteKeyBackupVersion(r.Context(), me, n) })
	return struct{}{}, err
}

// handleGetBackupKeys handles GET /room_keys/keys[/{roomId}[/{sessionId}]]?version=.
func (s *Server) handleGetBackupKeys(r *http.Request) (any, error) {
	v, err := s.queryVersion(r)
	if err != nil {
		return nil, err
	}
	roomID, sessionID := httputil.PathVar(r, "roomId"), httputil.PathVar(r, "sessionId")
	sessions, err := s.db.BackupSessions(r.Context(), v.UserID, v.Version, roomID, sessionID)
	if err != nil {
		return nil, err
	}
	rooms := map[string]roomKeyBackup{}
	for _, bs := range sessions {
		if sessionID != "" {
			return toKeyBackupData(bs), nil
		}
		room, ok := rooms[bs.RoomID]
		if !ok {
			room = roomKeyBackup{Sessions: map[string]keyBackupData{}}
			rooms[bs.RoomID] = room
		}
		room.Sessions[bs.SessionID] = toKeyBackupData(bs)
	}
	switch {
	case sessionID != "":
		return nil, spec.NotFound("key not found")
	case roomID != "":
		if room, ok := rooms[roomID]; ok {
			return room, nil
		}
		return roomKeyBackup{Sessions: map[string]keyBackupData{}}, nil
	}
	return map[string]any{"rooms": rooms}, nil
}

func toKeyBackupData(bs storage.BackupSession) keyBackupData {
	return keyBackupData{FirstMessageIndex: &bs.FirstMessageIndex, ForwardedCount: &bs.ForwardedCount,
		IsVerified: &bs.IsVerified, SessionData: json.RawMessage(bs.SessionData)}
}

// handlePutBackupKeys handles PUT /room_keys/keys[/{roomId}[/{sessionId}]]?version=, which
// must name the current version (else 403 M_WRONG_ROOM_KEYS_VERSION with current_version).
func (s *Server) handlePutBackupKeys(r *http.Request) (any, error) {
	me := httputil.Device(r.Context()).UserID
	version := r.URL.Query().Get("version")
	if version == "" {
		return nil, spec.MissingParam("version is required")
	}
	sessions, err := decodeBackupKeys(r)
	if err != nil {
		return nil, err
	}
	var resp backupUpdateResponse
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		cur, err := tx.CurrentKeyBackupVersion(r.Context(), me)
		if errors.Is(err, storage.ErrNotFound) {
			return unknownBackup()
		} else if err != nil {
			return err
		}
		if curName := strconv.FormatInt(cur.Version, 10); version != curName {
			return &httputil.Error{Status: http.StatusForbidden, Code: "M_WRONG_ROOM_KEYS_VERSION",
				Msg: "wrong backup version", Extra: map[string]any{"current_version": curName}}
		}
		if err := tx.PutBackupSessions(r.Context(), me, cur.Version, sessions); err != nil {
			return err
		}
		resp, err = backupState(r, tx, me, cur.Version)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// decodeBackupKeys reads the body of a PUT /room_keys/keys request, whose shape depends on
// how much of the path is given.
func decodeBackupKeys(r *http.Request) ([]storage.BackupSession, error) {
	roomID, sessionID := httputil.PathVar(r, "roomId"), httputil.PathVar(r, "sessionId")
	rooms := map[string]roomKeyBackup{}
	switch {
	case sessionID != "":
		var one keyBackupData
		if err := httputil.DecodeJSON(r, &one); err != nil {
			return nil, err
		}
		rooms[roomID] = roomKeyBackup{Sessions: map[string]keyBackupData{sessionID: one}}
	case roomID != "":
		var room roomKeyBackup
		if err := httputil.DecodeJSON(r, &room); err != nil {
			return nil, err
		}
		rooms[roomID] = room
	default:
		var all struct {
			Rooms map[string]roomKeyBackup `json:"rooms"`
		}
		if err := httputil.DecodeJSON(r, &all); err != nil {
			return nil, err
		}
		rooms = all.Rooms
	}
	var out []storage.BackupSession
	for room, rk := range rooms {
		for session, d := range rk.Sessions {
			if d.FirstMessageIndex == nil || d.ForwardedCount == nil || d.IsVerified == nil || !isObject(d.SessionData) {
				return nil, spec.BadJSON("key backup data needs first_message_index, forwarded_count, is_verified and session_data")
			}
			out = append(out, storage.BackupSession{RoomID: room, SessionID: session, FirstMessageIndex: *d.FirstMessageIndex,
				ForwardedCount: *d.ForwardedCount, IsVerified: *d.IsVerified, SessionData: string(d.SessionData)})
		}
	}
	return out, nil
}

// handleDeleteBackupKeys handles DELETE /room_keys/keys[/{roomId}[/{sessionId}]]?version=.
func (s *Server) handleDeleteBackupKeys(r *http.Request) (any, error) {
	v, err := s.queryVersion(r)
	if err != nil {
		return nil, err
	}
	var resp backupUpdateResponse
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		if err := tx.DeleteBackupSessions(r.Context(), v.UserID, v.Version, httputil.PathVar(r, "roomId"), httputil.PathVar(r, "sessionId")); err != nil {
			return err
		}
		resp, err = backupState(r, tx, v.UserID, v.Version)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// backupState returns the etag and key count of a version as tx sees them.
func backupState(r *http.Request, tx *storage.Tx, userID string, version int64) (backupUpdateResponse, error) {
	v, err := tx.KeyBackupVersion(r.Context(), userID, version)
	if err != nil {
		return backupUpdateResponse{}, err
	}
	count, err := tx.CountBackupSessions(r.Context(), userID, version)
	return backupUpdateResponse{ETag: strconv.FormatInt(v.ETag, 10), Count: count}, err
}

func isObject(raw json.RawMessage) bool {
	var m map[string]json.RawMessage
	return len(raw) > 0 && raw[0] == '{' && json.Unmarshal(raw, &m) == nil
}
