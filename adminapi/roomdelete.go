package adminapi

import (
	"context"
	"crypto/rand"
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

// The defaults of the delete room body, as Synapse has them.
const (
	defaultShutdownRoomName = "Content Violation Notification"
	defaultShutdownMessage  = "Sharing illegal content on this server is not permitted and rooms in violation will be blocked."
)

// deleteRoomBody is the body of DELETE /v1/rooms/{room_id} and /v2/rooms/{room_id}.
type deleteRoomBody struct {
	NewRoomUserID *string `json:"new_room_user_id"`
	RoomName      *string `json:"room_name"`
	Message       *string `json:"message"`
	Block         *bool   `json:"block"`
	Purge         *bool   `json:"purge"`
	ForcePurge    *bool   `json:"force_purge"`
}

// deleteOptions reads and checks the delete room body.
func (s *Server) deleteOptions(r *http.Request) (roomserver.ShutdownOptions, error) {
	var body deleteRoomBody
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return roomserver.ShutdownOptions{}, err
	}
	opts := roomserver.ShutdownOptions{RoomName: defaultShutdownRoomName, Message: defaultShutdownMessage, Purge: true}
	if body.NewRoomUserID != nil {
		u, err := spec.NewUserID(*body.NewRoomUserID, true)
		if err != nil || u.Domain() != s.rooms.ServerName() {
			return opts, spec.InvalidParam("User must be our own: " + *body.NewRoomUserID)
		}
		// The new room's creator must be an account: its room would otherwise belong to a
		// user nobody can log in as or administer.
		if _, err := s.db.Account(r.Context(), *body.NewRoomUserID); errors.Is(err, storage.ErrNotFound) {
			return opts, spec.InvalidParam("new_room_user_id is not a user of this server: " + *body.NewRoomUserID)
		} else if err != nil {
			return opts, err
		}
		opts.NewRoomUserID = *body.NewRoomUserID
	}
	if body.RoomName != nil {
		opts.RoomName = *body.RoomName
	}
	if body.Message != nil {
		opts.Message = *body.Message
	}
	if body.Block != nil {
		opts.Block = *body.Block
	}
	if body.Purge != nil {
		opts.Purge = *body.Purge
	}
	if body.ForcePurge != nil {
		opts.ForcePurge = *body.ForcePurge
	}
	return opts, nil
}

// emptyShutdown is the shutdown_room object of a deletion that removed nobody (yet).
func emptyShutdown() *roomserver.ShutdownResult {
	return &roomserver.ShutdownResult{KickedUsers: []string{}, FailedToKickUsers: []string{}, LocalAliases: []string{}}
}

// handleDeleteRoomV1 handles DELETE /v1/rooms/{room_id}: the deletion runs before the
// answer. An unknown room with block set is only blocked.
func (s *Server) handleDeleteRoomV1(r *http.Request) (any, error) {
	ctx := r.Context()
	roomID, err := httputil.PathRoomID(r, "room_id")
	if err != nil {
		return nil, err
	}
	opts, err := s.deleteOptions(r)
	if err != nil {
		return nil, err
	}
	admin := httputil.Device(ctx).UserID
	if _, err := s.knownRoom(ctx, roomID); err != nil {
		if !opts.Block {
			return nil, err
		}
		if err := s.rooms.SetRoomBlocked(ctx, admin, roomID, true); err != nil {
			return nil, err
		}
		s.audit(r, "block_room", "room_id", roomID, "block", true)
		return emptyShutdown(), nil
	}
	res, err := s.rooms.ShutdownRoom(ctx, admin, roomID, opts, nil)
	s.audit(r, "delete_room", "room_id", roomID, "purge", opts.Purge, "block", opts.Block, "err", err)
	if errors.Is(err, roomserver.ErrStillJoined) {
		return nil, httputil.Errorf(http.StatusBadRequest, "M_UNKNOWN", "%s", err.Error())
	} else if err != nil {
		return nil, err
	}
	return res, nil
}

// handleDeleteRoomV2 handles DELETE /v2/rooms/{room_id}: the deletion runs in the background;
// its status (GET .../delete_status) is kept in the database.
func (s *Server) handleDeleteRoomV2(r *http.Request) (any, error) {
	ctx := r.Context()
	roomID, err := httputil.PathRoomID(r, "room_id")
	if err != nil {
		return nil, err
	}
	opts, err := s.deleteOptions(r)
	if err != nil {
		return nil, err
	}
	if _, err := s.knownRoom(ctx, roomID); err != nil {
		return nil, err
	}
	previous, err := s.db.RoomDeletes(ctx, roomID, "")
	if err != nil {
		return nil, err
	}
	for _, d := range previous {
		if d.Status == "scheduled" || d.Status == "active" {
			return nil, httputil.Errorf(http.StatusBadRequest, "M_UNKNOWN", "Purge already in progress for %s", roomID)
		}
	}
	del := storage.RoomDelete{DeleteID: rand.Text(), RoomID: roomID, Status: "scheduled"}
	if err := s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.InsertRoomDelete(ctx, del, time.Now().UnixMilli()) }); err != nil {
		return nil, err
	}
	admin := httputil.Device(ctx).UserID
	s.audit(r, "delete_room", "room_id", roomID, "delete_id", del.DeleteID, "purge", opts.Purge, "block", opts.Block)
	go s.runDelete(context.WithoutCancel(ctx), admin, del, opts)
	return map[string]string{"delete_id": del.DeleteID}, nil
}

// runDelete runs a v2 deletion, recording its progress.
func (s *Server) runDelete(ctx context.Context, admin string, del storage.RoomDelete, opts roomserver.ShutdownOptions) {
	save := func() {
		err := s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.UpdateRoomDelete(ctx, del, time.Now().UnixMilli()) })
		if err != nil {
			s.log.Error("room delete status not saved", "room_id", del.RoomID, "delete_id", del.DeleteID, "err", err)
		}
	}
	setResult := func(res *roomserver.ShutdownResult) {
		if raw, err := json.Marshal(res); err == nil {
			del.Result = string(raw)
		}
	}
	del.Status = "active"
	save()
	res, err := s.rooms.ShutdownRoom(ctx, admin, del.RoomID, opts, func(res *roomserver.ShutdownResult) {
		setResult(res)
		save()
	})
	setResult(res)
	del.Status = "complete"
	if err != nil {
		del.Status, del.Error = "failed", err.Error()
		s.log.Warn("room delete failed", "room_id", del.RoomID, "delete_id", del.DeleteID, "err", err)
	}
	save()
}

// failUnfinishedDeletes marks the deletions a stopped process left unfinished failed: their
// status would otherwise stay active for ever. (They are not resumed: an admin may run the
// deletion again, which is safe to repeat.)
func (s *Server) failUnfinishedDeletes() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		return tx.FailUnfinishedRoomDeletes(ctx, "interrupted by a server restart", time.Now().UnixMilli())
	})
	if err != nil {
		s.log.Error("unfinished room deletes not marked failed", "err", err)
	}
}

// deleteStatus is one deletion as the delete_status routes show it.
func deleteStatus(d storage.RoomDelete) map[string]any {
	out := map[string]any{"delete_id": d.DeleteID, "room_id": d.RoomID, "status": d.Status}
	if d.Status == "failed" {
		out["error"] = d.Error
	}
	var res any = emptyShutdown()
	if d.Result != "" {
		res = json.RawMessage(d.Result)
	}
	out["shutdown_room"] = res
	return out
}

// handleDeleteStatusByRoom handles GET /v2/rooms/{room_id}/delete_status.
func (s *Server) handleDeleteStatusByRoom(r *http.Request) (any, error) {
	roomID, err := httputil.PathRoomID(r, "room_id")
	if err != nil {
		return nil, err
	}
	ds, err := s.db.RoomDeletes(r.Context(), roomID, "")
	if err != nil {
		return nil, err
	}
	if len(ds) == 0 {
		return nil, spec.NotFound("No delete task for room_id '" + roomID + "' found")
	}
	results := make([]map[string]any, 0, len(ds))
	for _, d := range ds {
		results = append(results, deleteStatus(d))
	}
	return map[string]any{"results": results}, nil
}

// handleDeleteStatusByID handles GET /v2/rooms/delete_status/{delete_id}.
func (s *Server) handleDeleteStatusByID(r *http.Request) (any, error) {
	id := httputil.PathVar(r, "delete_id")
	ds, err := s.db.RoomDeletes(r.Context(), "", id)
	if err != nil {
		return nil, err
	}
	if len(ds) == 0 {
		return nil, spec.NotFound("delete id '" + id + "' not found")
	}
	return deleteStatus(ds[0]), nil
}

// localUser checks that userID is a user of this server with an account.
func (s *Server) localUser(ctx context.Context, userID string) error {
	u, err := spec.NewUserID(userID, true)
	if err != nil {
		return spec.InvalidParam("invalid user ID")
	}
	if u.Domain() != s.rooms.ServerName() {
		return spec.InvalidParam("This endpoint can only be used with local users")
	}
	if _, err := s.db.Account(ctx, userID); errors.Is(err, storage.ErrNotFound) {
		return spec.NotFound("User not found")
	} else if err != nil {
		return err
	}
	return nil
}

// handleMakeRoomAdmin handles POST /v1/rooms/{room_id_or_alias}/make_room_admin {user_id}:
// the user (by default the admin calling) gets the highest power of a local member.
func (s *Server) handleMakeRoomAdmin(r *http.Request) (any, error) {
	ctx := r.Context()
	room, err := s.pathRoomOrAlias(r)
	if err != nil {
		return nil, err
	}
	var body struct {
		UserID *string `json:"user_id"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil && !emptyBody(r) {
		return nil, err
	}
	target := httputil.Device(ctx).UserID
	if body.UserID != nil {
		target = *body.UserID
	}
	if err := s.localUser(ctx, target); err != nil {
		return nil, err
	}
	err = s.rooms.MakeRoomAdmin(ctx, room.RoomID, target)
	if errors.Is(err, roomserver.ErrNoLocalAdmin) {
		return nil, httputil.Errorf(http.StatusBadRequest, "M_UNKNOWN", "%s", err.Error())
	} else if err != nil {
		return nil, err
	}
	s.audit(r, "make_room_admin", "room_id", room.RoomID, "user_id", target)
	return map[string]any{}, nil
}

// emptyBody reports whether the request came without a body (make_room_admin's is optional).
func emptyBody(r *http.Request) bool {
	return r.ContentLength == 0 || strings.TrimSpace(r.Header.Get("Content-Length")) == "0"
}

// handleJoinRoom handles POST /v1/join/{room_id_or_alias} {user_id}: a local user is joined
// to a room this server is in, invited first when the room is not public.
func (s *Server) handleJoinRoom(r *http.Request) (any, error) {
	ctx := r.Context()
	var body struct {
		UserID *string `json:"user_id"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.UserID == nil {
		return nil, httputil.Errorf(http.StatusBadRequest, "M_MISSING_PARAM", "user_id is required")
	}
	if err := s.localUser(ctx, *body.UserID); err != nil {
		return nil, err
	}
	room, err := s.pathRoomOrAlias(r)
	if err != nil {
		return nil, err
	}
	roomID, err := s.rooms.ForceJoin(ctx, httputil.Device(ctx).UserID, room.RoomID, *body.UserID)
	if err != nil {
		return nil, err
	}
	s.audit(r, "join_room", "room_id", roomID, "user_id", *body.UserID)
	return map[string]string{"room_id": roomID}, nil
}
