// Package clientapi serves the Client-Server API endpoints that are not the sync read side:
// accounts, devices, profiles, rooms, state and account data. Handlers are thin: they decode,
// call roomserver or storage, and return the spec's response. It must not import syncapi or
// federationapi.
package clientapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/lattice-chat/lattice/appservice"
	"github.com/lattice-chat/lattice/delayedevents"
	"github.com/lattice-chat/lattice/email"
	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/presence"
	"github.com/lattice-chat/lattice/internal/ratelimit"
	"github.com/lattice-chat/lattice/internal/typing"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// Waker tells /sync that a stream reached a position, waking the long-polls of users.
type Waker interface {
	Wake(stream storage.Stream, pos int64, users []string)
}

// Server is the client API.
type Server struct {
	cfg    *config.Config
	db     *storage.DB
	rooms  *roomserver.Server
	waker  Waker
	log    *slog.Logger
	uia    *sessionIDs // user-interactive authentication sessions
	nonces *sessionIDs // shared-secret registration nonces

	typing          *typing.Typing         // typing notifications, shared with syncapi
	presence        *presence.Service      // presence, shared with syncapi
	edus            EDUSink                // other servers' share of ephemeral changes; nil without federation (edus.go)
	remoteProfiles  RemoteProfiles         // other servers' users' profiles; nil without federation
	remoteDirectory RemoteDirectory        // other servers' aliases and public rooms; nil without federation
	remoteKeys      RemoteKeys             // other servers' users' end-to-end keys; nil without federation (remotekeys.go)
	remoteHierarchy RemoteHierarchy        // other servers' spaces and rooms; nil without federation (spaces.go)
	delayed         *delayedevents.Service // delayed events (MSC4140, delayedevents.go)
	unknownDelays   *ratelimit.Limiter     // actions on unknown delay IDs, by client address

	appservices *appservice.Server // application services; nil: none (appservice.go)
	email       *email.Service     // email verification; nil: email not configured (email.go)

	registerMu sync.Mutex // serialises account creation so that "user in use" is exact

	failedLogins  *ratelimit.Limiter // wrong passwords, by user ID
	registrations *ratelimit.Limiter // /register calls, by client address
	nonceRequests *ratelimit.Limiter // shared-secret registration nonces, by client address
	loginTokens   *ratelimit.Limiter // POST /v1/login/get_token, by user ID (logintoken.go)
	sends         *ratelimit.Limiter // messages sent, by user ID, at each user's rate (moderation.go)
}

// SetCluster tells the client API that other processes share its database and clients:
// shared-secret registration nonces are then signed, with a key derived from the shared
// secret, so that a nonce one process issued is accepted by the others. Call it before
// serving.
func (s *Server) SetCluster() {
	m := hmac.New(sha256.New, []byte(s.cfg.Registration.SharedSecret))
	m.Write([]byte("lattice cluster registration nonces"))
	s.nonces.key = m.Sum(nil)
}

// New returns the client API. typers and pres are shared with the sync API.
func New(cfg *config.Config, db *storage.DB, rooms *roomserver.Server, waker Waker, typers *typing.Typing, pres *presence.Service, log *slog.Logger) *Server {
	return &Server{cfg: cfg, db: db, rooms: rooms, waker: waker, typing: typers, presence: pres, log: log,
		uia:           newSessionIDs(15*time.Minute, 10_000),
		nonces:        newSessionIDs(5*time.Minute, 10_000),
		nonceRequests: ratelimit.New(10, 100),
		loginTokens:   ratelimit.New(1.0/60, 3),
		unknownDelays: ratelimit.New(1, 20),
		sends:         ratelimit.New(cfg.Limits.MessagesPerSecond, cfg.Limits.MessagesBurst),
		failedLogins:  ratelimit.New(cfg.Limits.FailedLoginsPerMinute/60, cfg.Limits.FailedLoginsBurst),
		registrations: ratelimit.New(cfg.Limits.RegistrationsPerMinute/60, cfg.Limits.RegistrationsBurst),
	}
}

func (s *Server) handle(fn httputil.HandlerFunc) http.Handler {
	return httputil.Handle(s.log, fn)
}

func (s *Server) authed(fn httputil.HandlerFunc) http.Handler {
	return httputil.Authenticate(s.log, s.db, httputil.Handle(s.log, fn))
}

// Register adds the client API routes to r (the /_matrix/client router).
func (s *Server) Register(root *mux.Router) {
	c := root.PathPrefix("/_matrix/client").Subrouter()
	v3 := c.PathPrefix("/{version:(?:v3|r0)}").Subrouter()
	var all []route
	for _, group := range [][]route{
		s.routes(), s.pushRuleRoutes(), s.keyRoutes(), s.toDeviceRoutes(),
		s.receiptRoutes(), s.typingRoutes(), s.presenceRoutes(), s.appServiceRoutes(),
		s.threadSubscriptionRoutes(), s.rtcRoutes(), s.delayedRoutes(), s.emailRoutes(),
	} {
		all = append(all, group...)
	}
	for _, rt := range all {
		base := v3
		if rt.unversioned {
			base = c
		}
		h := s.handle(rt.fn)
		if rt.auth {
			h = s.authed(rt.fn)
		}
		base.Handle(rt.path, h).Methods(rt.method)
	}
	// Signed in, the password changes with the current one; signed out, it is reset with a
	// verified email address (email.go).
	v3.Handle("/account/password", s.maybeAuthed(s.handlePassword)).Methods(http.MethodPost)
	root.Handle("/.well-known/matrix/client", s.handle(s.handleWellKnown)).Methods(http.MethodGet)
	root.Handle("/_synapse/admin/v1/register", s.handle(s.handleSharedSecretNonce)).Methods(http.MethodGet)
	root.Handle("/_synapse/admin/v1/register", s.handle(s.handleSharedSecretRegister)).Methods(http.MethodPost)
}

type route struct {
	method      string
	path        string
	auth        bool
	unversioned bool
	fn          httputil.HandlerFunc
}

func (s *Server) routes() []route {
	const get, post, put, del = http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete
	return []route{
		{get, "/versions", false, true, s.handleVersions},
		{get, "/capabilities", true, false, s.handleCapabilities},

		{get, "/login", false, false, s.handleLoginFlows},
		{post, "/login", false, false, s.handleLogin},
		{post, "/logout", true, false, s.handleLogout},
		{post, "/logout/all", true, false, s.handleLogoutAll},
		{post, "/register", false, false, s.handleRegister},
		{post, "/refresh", false, false, s.handleRefresh},
		{get, "/register/available", false, false, s.handleRegisterAvailable},
		{get, "/v1/register/m.login.registration_token/validity", false, true, s.handleRegistrationTokenValidity},
		{post, "/v1/login/get_token", true, true, s.handleGetLoginToken},
		{get, "/account/whoami", true, false, s.handleWhoami},
		{post, "/account/deactivate", true, false, s.handleDeactivate},
		{get, "/account/3pid", true, false, s.handleThreePIDs},
		{get, "/thirdparty/protocols", true, false, s.handleThirdPartyProtocols},
		{get, "/voip/turnServer", true, false, s.handleTurnServer},

		{get, "/devices", true, false, s.handleDevices},
		{get, "/devices/{deviceId}", true, false, s.handleDevice},
		{put, "/devices/{deviceId}", true, false, s.handleRenameDevice},
		{del, "/devices/{deviceId}", true, false, s.handleDeleteDevice},
		{post, "/delete_devices", true, false, s.handleDeleteDevices},

		{get, "/profile/{userId}", false, false, s.handleProfile},
		{get, "/profile/{userId}/{field}", false, false, s.handleProfileField},
		{put, "/profile/{userId}/{field}", true, false, s.handleSetProfileField},
		{del, "/profile/{userId}/{field}", true, false, s.handleDeleteProfileField},

		{post, "/createRoom", true, false, s.handleCreateRoom},
		{post, "/join/{roomIdOrAlias}", true, false, s.handleJoin},
		{post, "/rooms/{roomId}/join", true, false, s.handleJoin},
		{post, "/rooms/{roomId}/invite", true, false, s.handleInvite},
		{post, "/rooms/{roomId}/leave", true, false, s.handleLeave},
		{post, "/rooms/{roomId}/kick", true, false, s.handleKick},
		{post, "/rooms/{roomId}/ban", true, false, s.handleBan},
		{post, "/rooms/{roomId}/unban", true, false, s.handleUnban},
		{post, "/rooms/{roomId}/forget", true, false, s.handleForget},
		{get, "/joined_rooms", true, false, s.handleJoinedRooms},
		{post, "/knock/{roomIdOrAlias}", true, false, s.handleKnock},
		{post, "/rooms/{roomId}/upgrade", true, false, s.handleUpgrade},
		{post, "/rooms/{roomId}/report", true, false, s.handleReportRoom},
		{post, "/rooms/{roomId}/report/{eventId}", true, false, s.handleReportEvent},
		{post, "/users/{userId}/report", true, false, s.handleReportUser},
		{get, "/v1/rooms/{roomId}/hierarchy", true, true, s.handleHierarchy},
		{get, "/v1/room_summary/{roomIdOrAlias}", true, true, s.handleRoomSummary},
		{get, "/v1/mutual_rooms", true, true, s.handleMutualRooms},

		{put, "/rooms/{roomId}/send/{eventType}/{txnId}", true, false, s.handleSend},
		{put, "/rooms/{roomId}/redact/{eventId}/{txnId}", true, false, s.handleRedact},
		{put, "/rooms/{roomId}/state/{eventType}", true, false, s.handleSetState},
		{put, "/rooms/{roomId}/state/{eventType}/", true, false, s.handleSetState},
		{put, "/rooms/{roomId}/state/{eventType}/{stateKey}", true, false, s.handleSetState},
		{get, "/rooms/{roomId}/state", true, false, s.handleState},
		{get, "/rooms/{roomId}/state/{eventType}", true, false, s.handleStateEvent},
		{get, "/rooms/{roomId}/state/{eventType}/", true, false, s.handleStateEvent},
		{get, "/rooms/{roomId}/state/{eventType}/{stateKey}", true, false, s.handleStateEvent},

		{get, "/directory/room/{roomAlias}", false, false, s.handleGetAlias},
		{put, "/directory/room/{roomAlias}", true, false, s.handlePutAlias},
		{del, "/directory/room/{roomAlias}", true, false, s.handleDeleteAlias},
		{get, "/rooms/{roomId}/aliases", true, false, s.handleRoomAliases},
		{get, "/directory/list/room/{roomId}", false, false, s.handleGetVisibility},
		{get, "/publicRooms", false, false, s.handleGetPublicRooms},
		{post, "/publicRooms", true, false, s.handlePostPublicRooms},
		{post, "/user_directory/search", true, false, s.handleUserDirectory},
		{put, "/directory/list/room/{roomId}", true, false, s.handleSetVisibility},

		{get, "/user/{userId}/account_data/{type}", true, false, s.handleGetAccountData},
		{put, "/user/{userId}/account_data/{type}", true, false, s.handleSetAccountData},
		{get, "/user/{userId}/rooms/{roomId}/account_data/{type}", true, false, s.handleGetAccountData},
		{put, "/user/{userId}/rooms/{roomId}/account_data/{type}", true, false, s.handleSetAccountData},
		{del, "/unstable/org.matrix.msc3391/user/{userId}/account_data/{type}", true, true, s.handleDeleteAccountData},
		{del, "/unstable/org.matrix.msc3391/user/{userId}/rooms/{roomId}/account_data/{type}", true, true, s.handleDeleteAccountData},
		{get, "/user/{userId}/rooms/{roomId}/tags", true, false, s.handleTags},
		{put, "/user/{userId}/rooms/{roomId}/tags/{tag}", true, false, s.handleSetTag},
		{del, "/user/{userId}/rooms/{roomId}/tags/{tag}", true, false, s.handleDeleteTag},
	}
}
