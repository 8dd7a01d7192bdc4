// Package mediaapi is the media repository of the Client-Server API ("Content repository"):
// uploads (/_matrix/media/v3/upload, /_matrix/media/v1/create), authenticated downloads,
// thumbnails, the upload configuration and URL previews under /_matrix/client/v1/media, and the
// deprecated unauthenticated /_matrix/media/v3 equivalents. Bytes live in a Store (files below
// media.path); metadata in storage. Media of other servers is fetched through a RemoteFetcher
// and cached (remote.go); this server's media is served to other servers through
// federationapi, which calls LocalMedia and LocalThumbnail (federation.go). It must not import
// clientapi, syncapi or federationapi.
package mediaapi

import (
	"context"
	"log/slog"
	"net/http"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/netguard"
	"github.com/lattice-chat/lattice/storage"
)

// Server is the media repository.
type Server struct {
	cfg        config.Media
	serverName string
	db         *storage.DB
	store      Store
	log        *slog.Logger
	preview    *previewer
	now        func() time.Time
	// thumbSlots bounds concurrent thumbnail generation: each decoded image may take up to
	// 4 * media.max_image_pixels bytes of memory.
	thumbSlots chan struct{}
	uploaded   *uploadNotifier
	remote     RemoteFetcher // set by SetRemote before serving; nil without federation
	fetches    fetchGroup    // remote fetches under way

	stopSweep context.CancelFunc // set by Start
	sweepDone chan struct{}      // closed when the start-up sweep has ended

	// For Traffic: bytes of media content received from uploads and sent to downloads.
	bytesUp, bytesDown atomic.Int64

	mu sync.Mutex // guards putting
	// putting holds the media IDs whose content is being uploaded to an mxc:// URI made by
	// /create, so that two concurrent uploads cannot overwrite each other's file.
	putting map[string]bool
}

// New returns the media repository for cfg, whose Path must already be resolved (see
// config.Config.MediaPath). previewGuard decides which addresses URL previews may fetch
// (nil: netguard.Default()).
func New(cfg config.Media, serverName string, db *storage.DB, previewGuard *netguard.Policy, log *slog.Logger) (*Server, error) {
	store, err := NewFileStore(cfg.Path)
	if err != nil {
		return nil, err
	}
	return &Server{
		cfg:        cfg,
		serverName: serverName,
		db:         db,
		store:      store,
		log:        log,
		preview:    newPreviewer(cfg.URLPreview, previewGuard),
		now:        time.Now,
		thumbSlots: make(chan struct{}, 2),
		uploaded:   newUploadNotifier(),
		putting:    make(map[string]bool),
	}, nil
}

type route struct {
	method string
	path   string
	auth   bool
	h      http.Handler
}

// Register adds the media routes to root.
func (s *Server) Register(root *mux.Router) {
	for _, rt := range s.routes() {
		h := rt.h
		if rt.auth {
			h = httputil.Authenticate(s.log, s.db, h)
		}
		root.Handle(rt.path, h).Methods(rt.method)
	}
}

func (s *Server) routes() []route {
	const get, post, put = http.MethodGet, http.MethodPost, http.MethodPut
	const (
		v1     = "/_matrix/client/v1/media"
		legacy = "/_matrix/media/{version:(?:v3|r0)}"
	)
	return []route{
		{post, legacy + "/upload", true, s.json(s.handleUpload)},
		{put, legacy + "/upload/{serverName}/{mediaId}", true, s.json(s.handleUploadTo)},
		{post, "/_matrix/media/v1/create", true, s.json(s.handleCreate)},

		{get, v1 + "/config", true, s.json(s.handleConfig)},
		{get, v1 + "/download/{serverName}/{mediaId}", true, s.content(s.handleDownload)},
		{get, v1 + "/download/{serverName}/{mediaId}/{fileName}", true, s.content(s.handleDownload)},
		{get, v1 + "/thumbnail/{serverName}/{mediaId}", true, s.content(s.handleThumbnail)},
		{get, v1 + "/preview_url", true, s.json(s.handlePreviewURL)},

		// Deprecated by Matrix 1.11: downloads and thumbnails without authentication, which
		// serve only media uploaded before media.unauthenticated_media_freeze (lookup).
		{get, legacy + "/config", true, s.json(s.handleConfig)},
		{get, legacy + "/download/{serverName}/{mediaId}", false, s.content(s.handleDownload)},
		{get, legacy + "/download/{serverName}/{mediaId}/{fileName}", false, s.content(s.handleDownload)},
		{get, legacy + "/thumbnail/{serverName}/{mediaId}", false, s.content(s.handleThumbnail)},
		{get, legacy + "/preview_url", true, s.json(s.handlePreviewURL)},
	}
}

// json adapts a handler returning a JSON value.
func (s *Server) json(fn httputil.HandlerFunc) http.Handler {
	return httputil.Handle(s.log, fn)
}

// contentFunc is a handler that writes the response body itself (media bytes) or returns an
// error before writing anything.
type contentFunc func(w http.ResponseWriter, r *http.Request) error

// content adapts a contentFunc.
func (s *Server) content(fn contentFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			httputil.WriteError(w, r, s.log, err)
		}
	})
}

// uploadPath matches the upload endpoints, whose bodies are limited by media.max_upload_bytes
// rather than by the JSON limit.
var uploadPath = regexp.MustCompile(`^/_matrix/media/(?:v3|r0)/upload(?:/[^/]+/[^/]+)?$`)

// Limits wraps h like httputil.Limits with the JSON body limit maxJSONBytes, except for
// uploads: their handlers apply media.max_upload_bytes themselves.
func Limits(maxJSONBytes int64, h http.Handler) http.Handler {
	limited := httputil.Limits(maxJSONBytes, h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method == http.MethodPost || r.Method == http.MethodPut) && uploadPath.MatchString(r.URL.EscapedPath()) {
			h.ServeHTTP(w, r)
			return
		}
		limited.ServeHTTP(w, r)
	})
}

// isLocal reports whether serverName is this homeserver.
func (s *Server) isLocal(serverName string) bool {
	return serverName == s.serverName
}

// uploadNotifier wakes downloads waiting for the content of an mxc:// URI made by /create.
// It only shortens the wait within one process; waiters also re-check the database.
type uploadNotifier struct {
	mu sync.Mutex    // guards ch
	ch chan struct{} // closed and replaced on every completed upload
}

func newUploadNotifier() *uploadNotifier {
	return &uploadNotifier{ch: make(chan struct{})}
}

// wait returns a channel closed at the next completed upload.
func (n *uploadNotifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ch
}

func (n *uploadNotifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	close(n.ch)
	n.ch = make(chan struct{})
}

// sleepCtx waits for d, or until ctx ends or wake is closed.
func sleepCtx(ctx context.Context, d time.Duration, wake <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-wake:
	}
}
