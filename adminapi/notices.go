package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// Server notices: Synapse's server_notices.md, and the spec's server notices module. The
// notices account (config server_notices) is created on the first notice; each user gets one
// room, made on their first notice, tagged m.server_notice for them, to which they are
// invited (again, after they left it) whenever a notice is sent.
func (s *Server) noticeRoutes() []route {
	return []route{
		{http.MethodPost, "/v1/send_server_notice", s.handleSendServerNotice, false},
		{http.MethodPut, "/v1/send_server_notice/{txnId}", s.handleSendServerNotice, false},
	}
}

// serverNoticeTag is the room tag that identifies the server notices room to clients.
const serverNoticeTag = "m.server_notice"

type serverNoticeRequest struct {
	UserID   string          `json:"user_id"`
	Content  json.RawMessage `json:"content"`
	Type     string          `json:"type"`
	StateKey *string         `json:"state_key"`
}

// handleSendServerNotice handles POST /v1/send_server_notice and PUT
// /v1/send_server_notice/{txnId} {user_id, content, type, state_key} -> {event_id}; the
// PUT form sends one notice per transaction ID of the admin.
func (s *Server) handleSendServerNotice(r *http.Request) (any, error) {
	cfg := s.cfg.ServerNotices
	if cfg.SystemMXIDLocalpart == "" {
		return nil, httputil.Errorf(http.StatusBadRequest, "M_UNKNOWN", "server notices are not enabled on this server")
	}
	var req serverNoticeRequest
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.UserID == "" || len(req.Content) == 0 || string(req.Content) == "null" {
		return nil, spec.MissingParam("user_id and content are required")
	}
	if !strings.HasPrefix(strings.TrimSpace(string(req.Content)), "{") {
		return nil, spec.BadJSON("content must be an object")
	}
	if req.Type == "" {
		req.Type = "m.room.message"
	}
	if uid, err := spec.NewUserID(req.UserID, true); err != nil {
		return nil, spec.InvalidParam("invalid user_id")
	} else if string(uid.Domain()) != s.cfg.ServerName {
		return nil, spec.InvalidParam("server notices can only be sent to local users")
	}
	if _, err := s.db.Account(r.Context(), req.UserID); errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("user not found")
	} else if err != nil {
		return nil, err
	}

	s.ops.noticeMu.Lock()
	defer s.ops.noticeMu.Unlock()
	admin := httputil.Device(r.Context()).UserID
	txnID := httputil.PathVar(r, "txnId")
	if txnID != "" {
		if eventID, err := s.db.ServerNoticeTxn(r.Context(), admin, txnID); err == nil {
			return map[string]string{"event_id": eventID}, nil
		} else if !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
	}
	// The notice is sent whatever happens to the request from here on.
	ctx := context.WithoutCancel(r.Context())
	eventID, err := s.sendServerNotice(ctx, req)
	if err != nil {
		return nil, err
	}
	if txnID != "" {
		err := s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.InsertServerNoticeTxn(ctx, admin, txnID, eventID) })
		if err != nil {
			return nil, err
		}
	}
	s.audit(r, "send server notice", "user_id", req.UserID, "event_id", eventID, "txn_id", txnID)
	return map[string]string{"event_id": eventID}, nil
}

// sendServerNotice sends the notice into the user's notices room. Callers hold noticeMu.
func (s *Server) sendServerNotice(ctx context.Context, req serverNoticeRequest) (string, error) {
	notices, err := s.noticesUser(ctx)
	if err != nil {
		return "", err
	}
	roomID, err := s.noticeRoom(ctx, notices, req.UserID)
	if err != nil {
		return "", err
	}
	from := roomserver.Sender{UserID: notices}
	if req.StateKey != nil {
		return s.rooms.SetState(ctx, from, roomID, req.Type, *req.StateKey, req.Content)
	}
	return s.rooms.SendMessage(ctx, from, roomID, req.Type, req.Content, "")
}

// noticesUser returns the notices account, creating it (with the configured display name and
// avatar, and no password: nobody logs in as it) if it does not exist yet.
func (s *Server) noticesUser(ctx context.Context) (string, error) {
	cfg := s.cfg.ServerNotices
	userID := "@" + cfg.SystemMXIDLocalpart + ":" + s.cfg.ServerName
	if _, err := s.db.Account(ctx, userID); err == nil || !errors.Is(err, storage.ErrNotFound) {
		return userID, err
	}
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.InsertAccount(ctx, storage.Account{UserID: userID, CreatedTS: time.Now().UnixMilli()}); err != nil {
			return err
		}
		return tx.SetProfile(ctx, userID, storage.Profile{DisplayName: cfg.SystemMXIDDisplayName, AvatarURL: cfg.SystemMXIDAvatarURL})
	})
	if errors.Is(err, storage.ErrConflict) {
		err = nil // made meanwhile by another process
	}
	return userID, err
}

// noticeRoom returns the user's notices room, creating it on the first notice, and makes
// sure the user is invited to it or joined.
func (s *Server) noticeRoom(ctx context.Context, notices, userID string) (string, error) {
	roomID, err := s.db.ServerNoticeRoom(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return s.createNoticeRoom(ctx, notices, userID)
	} else if err != nil {
		return "", err
	}
	m, err := s.rooms.Membership(ctx, roomID, userID)
	if err != nil {
		return "", err
	}
	if m != spec.Invite && m != spec.Join {
		if err := s.rooms.Invite(ctx, notices, roomID, userID, ""); err != nil {
			return "", err
		}
		if err := s.tagNoticeRoom(ctx, userID, roomID); err != nil {
			return "", err
		}
	}
	return roomID, nil
}

// createNoticeRoom creates the user's notices room: private, named room_name, with the
// avatar of the notices account, the user invited and unable to send (power level -10).
func (s *Server) createNoticeRoom(ctx context.Context, notices, userID string) (string, error) {
	cfg := s.cfg.ServerNotices
	req := roomserver.CreateRoomRequest{
		Preset: roomserver.PresetPrivateChat, Invite: []string{userID},
		PowerLevelContentOverride: map[string]any{"users_default": -10},
	}
	if cfg.RoomName != "" {
		name := cfg.RoomName
		req.Name = &name
	}
	if cfg.SystemMXIDAvatarURL != "" {
		content, _ := json.Marshal(map[string]string{"url": cfg.SystemMXIDAvatarURL})
		req.InitialState = append(req.InitialState, roomserver.InitialState{Type: "m.room.avatar", Content: content})
	}
	roomID, err := s.rooms.CreateRoom(ctx, notices, "", req)
	if err != nil {
		return "", err
	}
	if err := s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.SetServerNoticeRoom(ctx, userID, roomID) }); err != nil {
		return "", err
	}
	return roomID, s.tagNoticeRoom(ctx, userID, roomID)
}

// tagNoticeRoom adds the m.server_notice tag to the room for the user, keeping their tags.
func (s *Server) tagNoticeRoom(ctx context.Context, userID, roomID string) error {
	tags := map[string]map[string]any{}
	if content, err := s.db.AccountDataEntry(ctx, userID, roomID, "m.tag"); err == nil {
		var cur struct {
			Tags map[string]map[string]any `json:"tags"`
		}
		if json.Unmarshal([]byte(content), &cur) == nil && cur.Tags != nil {
			tags = cur.Tags
		}
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	if _, ok := tags[serverNoticeTag]; ok {
		return nil
	}
	tags[serverNoticeTag] = map[string]any{}
	content, err := json.Marshal(map[string]any{"tags": tags})
	if err != nil {
		return err
	}
	var pos int64
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		pos, err = tx.SetAccountData(ctx, userID, roomID, "m.tag", string(content))
		return err
	})
	if err == nil && s.waker != nil {
		s.waker.Wake(storage.StreamAccountData, pos, []string{userID})
	}
	return err
}
