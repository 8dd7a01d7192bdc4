package mediaapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// What the admin API (adminapi) asks of the media repository: deleting media with its files,
// and refusing quarantined media to everyone.

// errQuarantined is the answer to a download or thumbnail of quarantined media: 404
// M_NOT_FOUND, as Synapse answers, so the content looks gone.
var errQuarantined = spec.NotFound("media not found")

// touchEvery is how stale the last access time of media may be: it is written at most this
// often per item, so that serving media rarely writes.
const touchEvery = 5 * time.Minute

// refuseQuarantined returns errQuarantined when the media item is quarantined; otherwise the
// item is about to be served, and its last access time is brought up to date.
func (s *Server) refuseQuarantined(ctx context.Context, m *storage.Media) error {
	q, last, err := s.db.MediaAccess(ctx, m.ServerName, m.MediaID)
	if err != nil {
		return err
	}
	if q {
		return errQuarantined
	}
	if now := s.now(); now.Sub(time.UnixMilli(last)) > touchEvery {
		err := s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.TouchMedia(ctx, m.ServerName, m.MediaID, now.UnixMilli()) })
		if err != nil {
			// Serving matters more than the bookkeeping.
			s.log.Warn("could not record media access", "media_id", m.MediaID, "err", err)
		}
	}
	return nil
}

// adminBypass reports whether the request asks, as Synapse allows server admins, to be
// served quarantined media (admin_unsafely_bypass_quarantine=true) and comes from an admin.
func (s *Server) adminBypass(r *http.Request) bool {
	dev := httputil.Device(r.Context())
	if dev == nil || r.URL.Query().Get("admin_unsafely_bypass_quarantine") != "true" {
		return false
	}
	acct, err := s.db.Account(r.Context(), dev.UserID)
	return err == nil && acct.IsAdmin
}

// DeleteMedia deletes a media item, local or cached remote: its rows, then its content and
// thumbnails from the media store. ErrNotFound if there is no such item. A crash between the
// two leaves files that no row refers to, which the start-up sweep removes.
func (s *Server) DeleteMedia(ctx context.Context, serverName, mediaID string) error {
	m, err := s.db.Media(ctx, serverName, mediaID)
	if err != nil {
		return err
	}
	thumbs, err := s.db.MediaThumbnails(ctx, serverName, mediaID)
	if err != nil {
		return err
	}
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.DeleteMedia(ctx, serverName, mediaID) })
	if err != nil {
		return err
	}
	local := s.isLocal(m.ServerName)
	var errs []error
	for _, th := range thumbs {
		errs = append(errs, s.store.Delete(ctx, thumbnailKey(serverName, mediaID, local, th.Width, th.Height, th.Method)))
	}
	errs = append(errs, s.store.Delete(ctx, mediaKey(serverName, mediaID, local)))
	return errors.Join(errs...)
}
