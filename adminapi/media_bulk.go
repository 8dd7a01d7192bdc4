package adminapi

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// The media routes that act on many items: those of a room, of a user, by date and size, and
// the remote media cache.

// parseMXC splits mxc://server/id; ok is false for anything else.
func parseMXC(uri string) (storage.MediaRef, bool) {
	rest, ok := strings.CutPrefix(uri, "mxc://")
	if !ok {
		return storage.MediaRef{}, false
	}
	server, id, ok := strings.Cut(rest, "/")
	if !ok || server == "" || id == "" || strings.Contains(id, "/") {
		return storage.MediaRef{}, false
	}
	return storage.MediaRef{ServerName: server, MediaID: id}, true
}

// roomMedia returns the media the path's {roomId} refers to; 404 for an unknown room.
func (s *Server) roomMedia(r *http.Request) ([]storage.MediaRef, error) {
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	room, err := s.db.Room(r.Context(), roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("unknown room")
	} else if err != nil {
		return nil, err
	}
	uris, err := s.db.RoomMediaURIs(r.Context(), room.NID)
	if err != nil {
		return nil, err
	}
	var refs []storage.MediaRef
	for _, u := range uris {
		if ref, ok := parseMXC(u); ok {
			refs = append(refs, ref)
		}
	}
	return refs, nil
}

// handleRoomMedia handles GET /v1/room/{roomId}/media: the mxc:// URIs of the room's
// unencrypted events, this server's apart from others'.
func (s *Server) handleRoomMedia(r *http.Request) (any, error) {
	refs, err := s.roomMedia(r)
	if err != nil {
		return nil, err
	}
	local, remote := []string{}, []string{}
	for _, ref := range refs {
		uri := "mxc://" + ref.ServerName + "/" + ref.MediaID
		if ref.ServerName == s.cfg.ServerName {
			local = append(local, uri)
		} else {
			remote = append(remote, uri)
		}
	}
	return map[string]any{"local": local, "remote": remote}, nil
}

// handleQuarantineRoomMedia handles POST /v1/room/{roomId}/media/quarantine (and the legacy
// /v1/quarantine_media/{roomId}): every item the room refers to, except protected ones.
func (s *Server) handleQuarantineRoomMedia(r *http.Request) (any, error) {
	refs, err := s.roomMedia(r)
	if err != nil {
		return nil, err
	}
	var n int64
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		n, err = tx.QuarantineMedia(r.Context(), refs, httputil.Device(r.Context()).UserID)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.audit(r, "quarantine room media", "room_id", httputil.PathVar(r, "roomId"), "num_quarantined", n)
	return map[string]any{"num_quarantined": n}, nil
}

// handleQuarantineUserMedia handles POST /v1/user/{userId}/media/quarantine: the local media
// the user uploaded, except protected items.
func (s *Server) handleQuarantineUserMedia(r *http.Request) (any, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	userID := u.UserID
	var n int64
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		n, err = tx.QuarantineUserMedia(r.Context(), s.cfg.ServerName, userID, httputil.Device(r.Context()).UserID)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.audit(r, "quarantine user media", "user_id", userID, "num_quarantined", n)
	return map[string]any{"num_quarantined": n}, nil
}

// userMediaPage reads the user media routes' parameters and returns the page of media.
func (s *Server) userMediaPage(r *http.Request) (userID string, items []*storage.MediaAdmin, from, total int, err error) {
	var u *storage.User
	if u, err = s.pathUser(r); err != nil {
		return
	}
	userID = u.UserID
	var limit int
	if from, limit, err = page(r, 100); err != nil {
		return
	}
	q := r.URL.Query()
	orderBy, dir := q.Get("order_by"), q.Get("dir")
	forwards := orderBy != "" || dir != "" // newest first unless either is given
	if orderBy == "" {
		orderBy = "created_ts"
	} else if _, ok := storage.UserMediaOrder[orderBy]; !ok {
		err = spec.InvalidParam("unknown order_by")
		return
	}
	switch dir {
	case "", "f":
	case "b":
		forwards = false
	default:
		err = spec.InvalidParam("dir must be f or b")
		return
	}
	items, total, err = s.db.UserMedia(r.Context(), s.cfg.ServerName, userID, orderBy, forwards, from, limit)
	return
}

// handleUserMedia handles GET /v1/users/{userId}/media (from, limit, order_by, dir).
func (s *Server) handleUserMedia(r *http.Request) (any, error) {
	_, items, from, total, err := s.userMediaPage(r)
	if err != nil {
		return nil, err
	}
	media := make([]map[string]any, 0, len(items))
	for _, m := range items {
		media = append(media, map[string]any{
			"media_id": m.MediaID, "media_type": m.ContentType, "media_length": m.Size,
			"upload_name": orNull(m.UploadName), "created_ts": m.CreatedTS, "last_access_ts": lastAccess(m),
			"quarantined_by": orNull(m.QuarantinedBy), "safe_from_quarantine": m.SafeFromQuarantine,
		})
	}
	resp := map[string]any{"media": media, "total": total}
	if from+len(items) < total {
		resp["next_token"] = from + len(items) // an integer, as Synapse sends it
	}
	return resp, nil
}

// handleDeleteUserMedia handles DELETE /v1/users/{userId}/media: the page of the user's media
// that the listing's parameters select (100 by default) is deleted with its files.
func (s *Server) handleDeleteUserMedia(r *http.Request) (any, error) {
	_, items, _, _, err := s.userMediaPage(r)
	if err != nil {
		return nil, err
	}
	refs := make([]storage.MediaRef, 0, len(items))
	for _, m := range items {
		refs = append(refs, storage.MediaRef{ServerName: m.ServerName, MediaID: m.MediaID})
	}
	deleted, err := s.deleteMedia(r, refs)
	if err != nil {
		return nil, err
	}
	return map[string]any{"deleted_media": deleted, "total": len(deleted)}, nil
}

// beforeTS reads the required before_ts parameter, a time in milliseconds.
func beforeTS(r *http.Request) (int64, error) {
	v := r.URL.Query().Get("before_ts")
	if v == "" {
		return 0, spec.MissingParam("missing integer query parameter before_ts")
	}
	ts, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ts < 0 {
		return 0, spec.InvalidParam("before_ts must be a non-negative integer")
	}
	if ts < 30_000_000_000 {
		// As Synapse: a time in seconds rather than milliseconds would delete nearly nothing.
		return 0, spec.InvalidParam("before_ts is in 1970: it must be in milliseconds")
	}
	return ts, nil
}

// handleDeleteOldMedia handles POST /v1/media/delete and the older
// /v1/media/{serverName}/delete (before_ts, size_gt, keep_profiles): local media created
// before before_ts and larger than size_gt bytes, except quarantined and protected media and,
// unless keep_profiles=false, user and room avatars.
func (s *Server) handleDeleteOldMedia(r *http.Request) (any, error) {
	if name, ok := pathVarPresent(r, "serverName"); ok && name != s.cfg.ServerName {
		return nil, spec.InvalidParam("can only delete local media")
	}
	before, err := beforeTS(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	var sizeGT int64
	if v := q.Get("size_gt"); v != "" {
		if sizeGT, err = strconv.ParseInt(v, 10, 64); err != nil || sizeGT < 0 {
			return nil, spec.InvalidParam("size_gt must be a non-negative integer")
		}
	}
	keepProfiles := true
	switch q.Get("keep_profiles") {
	case "", "true":
	case "false":
		keepProfiles = false
	default:
		return nil, spec.InvalidParam("keep_profiles must be true or false")
	}
	ids, err := s.db.OldLocalMedia(r.Context(), s.cfg.ServerName, before, sizeGT)
	if err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	if keepProfiles {
		if keep, err = s.db.AvatarMediaURIs(r.Context()); err != nil {
			return nil, err
		}
	}
	var refs []storage.MediaRef
	for _, id := range ids {
		if !keep["mxc://"+s.cfg.ServerName+"/"+id] {
			refs = append(refs, storage.MediaRef{ServerName: s.cfg.ServerName, MediaID: id})
		}
	}
	deleted, err := s.deleteMedia(r, refs)
	if err != nil {
		return nil, err
	}
	return map[string]any{"deleted_media": deleted, "total": len(deleted)}, nil
}

// pathVarPresent returns a path variable and whether the route has it.
func pathVarPresent(r *http.Request, name string) (string, bool) {
	v := httputil.PathVar(r, name)
	return v, v != ""
}

// handlePurgeMediaCache handles POST /v1/purge_media_cache?before_ts=: cached media of other
// servers fetched before before_ts (quarantined items stay, to stay quarantined).
func (s *Server) handlePurgeMediaCache(r *http.Request) (any, error) {
	before, err := beforeTS(r)
	if err != nil {
		return nil, err
	}
	refs, err := s.db.OldRemoteMedia(r.Context(), before)
	if err != nil {
		return nil, err
	}
	deleted, err := s.deleteMedia(r, refs)
	if err != nil {
		return nil, err
	}
	return map[string]any{"deleted": len(deleted)}, nil
}
