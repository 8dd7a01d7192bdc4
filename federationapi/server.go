// Package federationapi is the Server-Server API in both directions: the signing keys this
// server publishes and the notary service (/_matrix/key/v2), the keyring that fetches and
// caches other servers' keys, X-Matrix request verification, the authenticated federation
// queries (profiles, directory, public rooms, device lists and end-to-end keys of local
// users), the outbound, X-Matrix-signing federation client and the sender that drains the
// federation outbox (sender.go), and media in both directions: this server's media served
// to others (media.go, from the media repository through MediaSource) and other servers'
// media fetched for the media repository (mediaclient.go).
//
// It must not import clientapi, syncapi, mediaapi or pusher; it reads storage directly and
// will hand received events to roomserver.
package federationapi

import (
	"crypto/ed25519"
	"crypto/x509"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/netguard"
	"github.com/lattice-chat/lattice/internal/version"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// Config is what the federation API needs to know about this server.
type Config struct {
	ServerName spec.ServerName
	KeyID      gomatrixserverlib.KeyID
	PrivateKey ed25519.PrivateKey
	// KeyValidity is how long our key responses say they are valid.
	KeyValidity time.Duration
	// VerifyTLS checks other servers' certificates on outbound connections, against
	// RootCAs (nil: the system's roots).
	VerifyTLS bool
	RootCAs   *x509.CertPool
	// Guard decides which addresses outbound federation and remote media (Location
	// redirects included) may connect to; nil means netguard.Default().
	Guard *netguard.Policy
	// Version is reported by /_matrix/federation/v1/version; empty: the module version.
	Version string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// PartialStateJoins joins remote rooms with send_join's omit_members (MSC3706).
	PartialStateJoins bool
}

// Server serves the federation API and owns the keyring and the outbound client.
type Server struct {
	cfg     Config
	db      *storage.DB
	log     *slog.Logger
	client  *Client
	keys    *storage.ServerKeyCache
	fetcher *recordingKeyClient
	keyRing *gomatrixserverlib.KeyRing
	sender  *Sender
	rs      *roomserver.Server // set by SetRoomserver before the listener starts
	txns    txnCache           // answers to recent transactions (send.go)
	edus    ephemeral          // the notifier and typing state for EDUs (edu.go, eduout.go)
	media   MediaSource        // set by SetMedia before the listener starts (media.go)

	originMu sync.Mutex                      // guards origins
	origins  map[spec.ServerName]*sync.Mutex // serialises each origin's transactions
}

// SetRoomserver gives the federation API the roomserver that received events go to. The
// roomserver is built after the federation API (it needs the sender), so this is a setter.
func (s *Server) SetRoomserver(rs *roomserver.Server) { s.rs = rs }

// Remote returns the roomserver's way to other servers (remote.go).
func (s *Server) Remote() roomserver.Remote { return &remote{s: s} }

// New returns the federation API of this server.
func New(cfg Config, db *storage.DB, log *slog.Logger) (*Server, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Version == "" {
		cfg.Version = version.String()
	}
	if cfg.Guard == nil {
		cfg.Guard = netguard.Default()
	}
	if !cfg.VerifyTLS {
		log.Warn("federation.verify_tls is false: other servers' TLS certificates are not checked, so anyone on the network path can impersonate them")
	}
	client, err := NewClient(ClientConfig{
		ServerName: cfg.ServerName, KeyID: cfg.KeyID, PrivateKey: cfg.PrivateKey,
		VerifyTLS: cfg.VerifyTLS, RootCAs: cfg.RootCAs, Guard: cfg.Guard,
	})
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, db: db, log: log, client: client, keys: db.ServerKeyCache(cfg.Now)}
	s.fetcher = &recordingKeyClient{client: client.fc, cache: s.keys, now: cfg.Now, log: log}
	s.keyRing = s.newKeyRing()
	s.sender = NewSender(SenderConfig{Origin: cfg.ServerName, Now: cfg.Now}, db, client.fc, log)
	return s, nil
}

// Client returns the outbound federation client, which signs requests as this server.
func (s *Server) Client() *Client { return s.client }

// Sender returns the sender of the federation outbox, through the outbound client. The
// caller starts and closes it.
func (s *Server) Sender() *Sender { return s.sender }

type route struct {
	method, path string
	handler      httputil.HandlerFunc
	// signed routes need an X-Matrix Authorization header from the requesting server.
	signed bool
}

func (s *Server) routes() []route {
	return []route{
		{"GET", "/_matrix/key/v2/server", s.handleServerKeys, false},
		{"GET", "/_matrix/key/v2/query/{serverName}", s.handleQueryKeysGet, false},
		{"POST", "/_matrix/key/v2/query", s.handleQueryKeysPost, false},
		{"GET", "/_matrix/federation/v1/version", s.handleVersion, false},
		{"GET", "/_matrix/federation/v1/openid/userinfo", s.handleOpenIDUserInfo, false},
		{"GET", "/_matrix/federation/v1/query/profile", s.handleQueryProfile, true},
		{"GET", "/_matrix/federation/v1/query/directory", s.handleQueryDirectory, true},
		{"GET", "/_matrix/federation/v1/publicRooms", s.handleGetPublicRooms, true},
		{"POST", "/_matrix/federation/v1/publicRooms", s.handlePostPublicRooms, true},
		{"GET", "/_matrix/federation/v1/user/devices/{userId}", s.handleUserDevices, true},
		{"POST", "/_matrix/federation/v1/user/keys/query", s.handleUserKeysQuery, true},
		{"POST", "/_matrix/federation/v1/user/keys/claim", s.handleUserKeysClaim, true},
		{"GET", "/_matrix/federation/v1/hierarchy/{roomId}", s.handleHierarchy, true},
		// Transactions (send.go).
		{"PUT", "/_matrix/federation/v1/send/{txnId}", s.handleSend, true},
		// Reading room events (events.go).
		{"GET", "/_matrix/federation/v1/event/{eventId}", s.handleGetEvent, true},
		{"GET", "/_matrix/federation/v1/state/{roomId}", s.handleState, true},
		{"GET", "/_matrix/federation/v1/state_ids/{roomId}", s.handleStateIDs, true},
		{"GET", "/_matrix/federation/v1/event_auth/{roomId}/{eventId}", s.handleEventAuth, true},
		{"GET", "/_matrix/federation/v1/backfill/{roomId}", s.handleBackfill, true},
		{"POST", "/_matrix/federation/v1/get_missing_events/{roomId}", s.handleGetMissingEvents, true},
		{"GET", "/_matrix/federation/v1/timestamp_to_event/{roomId}", s.handleTimestampToEvent, true},
		// Memberships (membership.go).
		{"GET", "/_matrix/federation/v1/make_join/{roomId}/{userId}", s.handleMakeJoin, true},
		{"PUT", "/_matrix/federation/v1/send_join/{roomId}/{eventId}", s.handleSendJoinV1, true},
		{"PUT", "/_matrix/federation/v2/send_join/{roomId}/{eventId}", s.handleSendJoin, true},
		{"GET", "/_matrix/federation/v1/make_leave/{roomId}/{userId}", s.handleMakeLeave, true},
		{"PUT", "/_matrix/federation/v1/send_leave/{roomId}/{eventId}", s.handleSendLeaveV1, true},
		{"PUT", "/_matrix/federation/v2/send_leave/{roomId}/{eventId}", s.handleSendLeave, true},
		{"GET", "/_matrix/federation/v1/make_knock/{roomId}/{userId}", s.handleMakeKnock, true},
		{"PUT", "/_matrix/federation/v1/send_knock/{roomId}/{eventId}", s.handleSendKnock, true},
		{"PUT", "/_matrix/federation/v2/invite/{roomId}/{eventId}", s.handleInvite, true},
		// Media (media.go).
		{"GET", "/_matrix/federation/v1/media/download/{mediaId}", s.handleMediaDownload, true},
		{"GET", "/_matrix/federation/v1/media/thumbnail/{mediaId}", s.handleMediaThumbnail, true},
	}
}

// Register adds the federation endpoints to router.
func (s *Server) Register(router *mux.Router) {
	for _, rt := range s.routes() {
		h := httputil.Handle(s.log, rt.handler)
		if rt.signed {
			h = s.authenticate(s.checkACL(h))
		}
		router.Handle(rt.path, h).Methods(rt.method)
	}
}

// checkACL answers 403 M_FORBIDDEN to a server that the server ACL of the room named in the
// path ({roomId}) denies; routes without a room pass.
func (s *Server) checkACL(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The decoded room ID, as the handlers read it: the router keeps paths encoded.
		if roomID := httputil.PathVar(r, "roomId"); roomID != "" && s.rs != nil {
			if fr := request(r.Context()); fr != nil && !s.rs.ServerAllowed(r.Context(), roomID, fr.Origin()) {
				httputil.WriteError(w, r, s.log, spec.Forbidden("the room's server ACL denies your server"))
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// Handler returns the whole federation listener's handler: the routes, the spec's answers
// to unknown endpoints, a body limit and panic recovery.
func (s *Server) Handler(maxRequestBytes int64) http.Handler {
	router := mux.NewRouter().SkipClean(true).UseEncodedPath()
	router.Use(httputil.RecordRoute)
	s.Register(router)
	httputil.SetUnmatched(router)
	return httputil.Recover(s.log, httputil.CheckURL(httputil.Limits(maxRequestBytes, router)))
}

// handleVersion handles GET /_matrix/federation/v1/version.
func (s *Server) handleVersion(*http.Request) (any, error) {
	return map[string]any{"server": map[string]string{"name": "Lattice", "version": s.cfg.Version}}, nil
}

// isLocalUser reports whether userID is a well-formed user ID of this server.
func (s *Server) isLocalUser(userID string) bool {
	u, err := spec.NewUserID(userID, true)
	return err == nil && u.Domain() == s.cfg.ServerName
}
