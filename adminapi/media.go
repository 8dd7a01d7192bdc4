package adminapi

import (
	"errors"
	"net/http"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// Media: Synapse's media_admin_api.md (info, quarantine, protection, deletion, purge of the
// remote cache, media of a room) and the user media section of user_admin_api.md. Quarantined
// media is refused on download and thumbnail by mediaapi; deleting goes through the media
// repository (Media, SetMedia) so that the files go with the rows.
func (s *Server) mediaRoutes() []route {
	const get, post, del = http.MethodGet, http.MethodPost, http.MethodDelete
	return []route{
		{post, "/v1/media/delete", s.handleDeleteOldMedia, false},
		{post, "/v1/media/protect/{mediaId}", s.handleProtectMedia, false},
		{post, "/v1/media/unprotect/{mediaId}", s.handleProtectMedia, false},
		{post, "/v1/media/quarantine/{serverName}/{mediaId}", s.handleQuarantineMedia, false},
		{post, "/v1/media/unquarantine/{serverName}/{mediaId}", s.handleQuarantineMedia, false},
		{post, "/v1/media/{serverName}/delete", s.handleDeleteOldMedia, false},
		{get, "/v1/media/{serverName}/{mediaId}", s.handleMediaInfo, false},
		{del, "/v1/media/{serverName}/{mediaId}", s.handleDeleteMedia, false},
		{post, "/v1/purge_media_cache", s.handlePurgeMediaCache, false},
		{get, "/v1/room/{roomId}/media", s.handleRoomMedia, false},
		{post, "/v1/room/{roomId}/media/quarantine", s.handleQuarantineRoomMedia, false},
		{post, "/v1/quarantine_media/{roomId}", s.handleQuarantineRoomMedia, false},
		{post, "/v1/user/{userId}/media/quarantine", s.handleQuarantineUserMedia, false},
		{get, "/v1/users/{userId}/media", s.handleUserMedia, false},
		{del, "/v1/users/{userId}/media", s.handleDeleteUserMedia, false},
	}
}

// mediaItem returns the media item of the path's {serverName} (this server when absent) and
// {mediaId}, or 404 M_NOT_FOUND.
func (s *Server) mediaItem(r *http.Request) (*storage.MediaAdmin, error) {
	serverName := httputil.PathVar(r, "serverName")
	if serverName == "" {
		serverName = s.cfg.ServerName
	}
	m, err := s.db.MediaAdminInfo(r.Context(), serverName, httputil.PathVar(r, "mediaId"))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("unknown media")
	}
	return m, err
}

// lastAccess is the item's last access time, or JSON null if it was never served.
func lastAccess(m *storage.MediaAdmin) any {
	if m.LastAccessTS == 0 {
		return nil
	}
	return m.LastAccessTS
}

// handleMediaInfo handles GET /v1/media/{serverName}/{mediaId}: local or cached remote media.
func (s *Server) handleMediaInfo(r *http.Request) (any, error) {
	m, err := s.mediaItem(r)
	if err != nil {
		return nil, err
	}
	freeze := s.cfg.Media.Freeze()
	info := map[string]any{
		"media_origin": m.ServerName, "user_id": orNull(m.UserID), "media_id": m.MediaID,
		"media_type": m.ContentType, "media_length": m.Size, "upload_name": orNull(m.UploadName),
		"created_ts": m.CreatedTS, "filesystem_id": m.MediaID, "url_cache": nil, "last_access_ts": lastAccess(m),
		"quarantined_by": orNull(m.QuarantinedBy), "safe_from_quarantine": m.SafeFromQuarantine,
		"authenticated": freeze.IsZero() || m.UploadedTS >= freeze.UnixMilli(), "sha256": orNull(m.SHA256),
	}
	if m.Remote {
		info["user_id"], info["safe_from_quarantine"] = nil, nil
	}
	return map[string]any{"media_info": info}, nil
}

// handleQuarantineMedia handles POST /v1/media/quarantine/{serverName}/{mediaId} and
// /v1/media/unquarantine/...: media safe from quarantine stays unquarantined.
func (s *Server) handleQuarantineMedia(r *http.Request) (any, error) {
	m, err := s.mediaItem(r)
	if err != nil {
		return nil, err
	}
	by, action := httputil.Device(r.Context()).UserID, "quarantine media"
	if !isQuarantine(r) {
		by, action = "", "unquarantine media"
	}
	ref := []storage.MediaRef{{ServerName: m.ServerName, MediaID: m.MediaID}}
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		_, err := tx.QuarantineMedia(r.Context(), ref, by)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.audit(r, action, "server_name", m.ServerName, "media_id", m.MediaID)
	return struct{}{}, nil
}

// isQuarantine tells the quarantine and protect routes from their reverse.
func isQuarantine(r *http.Request) bool {
	return !strings.Contains(r.URL.Path, "/unquarantine/") && !strings.Contains(r.URL.Path, "/unprotect/")
}

// handleProtectMedia handles POST /v1/media/protect/{mediaId} and /v1/media/unprotect/{mediaId}
// (local media): protected media is never quarantined.
func (s *Server) handleProtectMedia(r *http.Request) (any, error) {
	m, err := s.mediaItem(r)
	if err != nil {
		return nil, err
	}
	protect := isQuarantine(r)
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		return tx.SetMediaProtected(r.Context(), m.ServerName, m.MediaID, protect)
	})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("unknown media")
	} else if err != nil {
		return nil, err
	}
	action := "protect media"
	if !protect {
		action = "unprotect media"
	}
	s.audit(r, action, "media_id", m.MediaID)
	return struct{}{}, nil
}

// handleDeleteMedia handles DELETE /v1/media/{serverName}/{mediaId}: local media only.
func (s *Server) handleDeleteMedia(r *http.Request) (any, error) {
	if httputil.PathVar(r, "serverName") != s.cfg.ServerName {
		return nil, spec.InvalidParam("can only delete local media")
	}
	m, err := s.mediaItem(r)
	if err != nil {
		return nil, err
	}
	deleted, err := s.deleteMedia(r, []storage.MediaRef{{ServerName: m.ServerName, MediaID: m.MediaID}})
	if err != nil {
		return nil, err
	}
	return map[string]any{"deleted_media": deleted, "total": len(deleted)}, nil
}

// deleteMedia deletes media items with their files and returns the IDs of those deleted.
func (s *Server) deleteMedia(r *http.Request, refs []storage.MediaRef) ([]string, error) {
	if s.ops.media == nil {
		return nil, errors.New("admin API: no media repository")
	}
	deleted := []string{}
	for _, ref := range refs {
		err := s.ops.media.DeleteMedia(r.Context(), ref.ServerName, ref.MediaID)
		if errors.Is(err, storage.ErrNotFound) {
			continue // deleted meanwhile
		} else if err != nil {
			return nil, err
		}
		deleted = append(deleted, ref.MediaID)
		s.audit(r, "delete media", "server_name", ref.ServerName, "media_id", ref.MediaID)
	}
	return deleted, nil
}
