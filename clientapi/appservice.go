package clientapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/appservice"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/publicrooms"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// loginTypeAppService is the login and registration type of application services.
const loginTypeAppService = "m.login.application_service"

// SetAppServices gives the client API the application services: their registrations,
// queries and pings. Without it the server behaves as if none were registered.
func (s *Server) SetAppServices(a *appservice.Server) { s.appservices = a }

func (s *Server) appServiceRoutes() []route {
	const get, post, put = http.MethodGet, http.MethodPost, http.MethodPut
	return []route{
		{post, "/v1/appservice/{appserviceId}/ping", true, true, s.handleAppServicePing},
		{put, "/directory/list/appservice/{networkId}/{roomId}", true, false, s.handleSetNetworkVisibility},
		{get, "/thirdparty/protocol/{protocol}", true, false, s.handleThirdPartyProtocol},
		{get, "/thirdparty/location", true, false, s.handleThirdPartyLookup},
		{get, "/thirdparty/location/{protocol}", true, false, s.handleThirdPartyLookup},
		{get, "/thirdparty/user", true, false, s.handleThirdPartyLookup},
		{get, "/thirdparty/user/{protocol}", true, false, s.handleThirdPartyLookup},
	}
}

// exclusiveError is the answer to a user who tries to take a user ID or alias that an
// application service holds exclusively, or to a service outside its namespaces.
func exclusiveError(msg string) error {
	return &httputil.Error{Status: http.StatusBadRequest, Code: "M_EXCLUSIVE", Msg: msg}
}

// loginUnsupported is the answer to a service that opted into device management (MSC4190,
// "device_management" once stable) and asks for an access token of one of its users.
func loginUnsupported(msg string) error {
	return &httputil.Error{Status: http.StatusBadRequest, Code: "M_APPSERVICE_LOGIN_UNSUPPORTED", Msg: msg}
}

// checkExclusiveUser refuses userID to anyone but the service holding it exclusively.
func (s *Server) checkExclusiveUser(ctx context.Context, userID string) error {
	if s.appservices == nil {
		return nil
	}
	if owner := s.appservices.Registry().ExclusiveUser(userID); owner != nil && owner != appservice.FromContext(ctx) {
		return exclusiveError("this user ID is reserved by an application service")
	}
	return nil
}

// checkAlias refuses an alias in an exclusive aliases namespace to anyone but its service,
// and an alias outside its aliases namespaces to a service (Application Service API,
// "Server admin style permissions").
func (s *Server) checkAlias(ctx context.Context, alias string) error {
	if s.appservices == nil {
		return nil
	}
	caller := appservice.FromContext(ctx)
	if owner := s.appservices.Registry().ExclusiveAlias(alias); owner != nil && owner != caller {
		return exclusiveError("this alias is reserved by an application service")
	}
	if caller != nil && !caller.InAliases(alias) {
		return exclusiveError("the alias is not in the application service's namespace")
	}
	return nil
}

// registerAppService handles POST /register with type m.login.application_service: a
// service creates a user of its namespace, without a password or user-interactive
// authentication.
func (s *Server) registerAppService(r *http.Request, req registerRequest) (any, error) {
	svc := appservice.FromContext(r.Context())
	if svc == nil {
		if httputil.AccessToken(r) == "" {
			return nil, spec.MissingToken("m.login.application_service needs the application service's token")
		}
		return nil, &httputil.Error{Status: http.StatusUnauthorized, Code: "M_UNKNOWN_TOKEN", Msg: "unknown application service token"}
	}
	if req.Username == "" {
		return nil, spec.MissingParam("username is required")
	}
	if svc.MSC4190 && !req.InhibitLogin {
		return nil, loginUnsupported("an application service using device management (MSC4190) must register with inhibit_login")
	}
	localpart := strings.TrimPrefix(req.Username, "@")
	localpart, _ = strings.CutSuffix(localpart, ":"+s.cfg.ServerName)
	if !validLocalpart.MatchString(localpart) {
		return nil, spec.InvalidUsername("user names may contain only a-z, 0-9, . _ = - / +")
	}
	userID := "@" + localpart + ":" + s.cfg.ServerName
	if !s.appservices.Registry().MayUseUser(svc, userID) {
		return nil, exclusiveError("the user ID is not in the application service's namespace, or another service holds it exclusively")
	}
	s.registerMu.Lock()
	err := s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		return tx.InsertAccount(r.Context(), storage.Account{UserID: userID, CreatedTS: time.Now().UnixMilli()})
	})
	s.registerMu.Unlock()
	if errors.Is(err, storage.ErrConflict) {
		return nil, spec.UserInUse("user ID already taken")
	} else if err != nil {
		return nil, err
	}
	resp := map[string]any{"user_id": userID}
	if req.InhibitLogin {
		return resp, nil
	}
	deviceID, token, err := s.newDevice(r.Context(), userID, req.DeviceID, req.InitialDeviceDisplayName, clientIP(r))
	if err != nil {
		return nil, err
	}
	resp["device_id"], resp["access_token"] = deviceID, token
	return resp, nil
}

// loginAppService checks POST /login with type m.login.application_service: the caller is a
// service and the user is one of its own.
func (s *Server) loginAppService(r *http.Request, userID string) error {
	svc := appservice.FromContext(r.Context())
	if svc == nil {
		if httputil.AccessToken(r) == "" {
			return spec.MissingToken("m.login.application_service needs the application service's token")
		}
		return &httputil.Error{Status: http.StatusUnauthorized, Code: "M_UNKNOWN_TOKEN", Msg: "unknown application service token"}
	}
	if svc.MSC4190 {
		return loginUnsupported("an application service using device management (MSC4190) cannot log in as its users")
	}
	if !s.appservices.Registry().MayUseUser(svc, userID) {
		return &httputil.Error{Status: http.StatusForbidden, Code: "M_EXCLUSIVE", Msg: "the user is not in the application service's namespace, or another service holds it exclusively"}
	}
	acc, err := s.db.Account(r.Context(), userID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && acc.Deactivated) {
		return spec.Forbidden("no such user")
	}
	return err
}

// askServiceForAlias asks the services of an unknown local alias's namespace to create it,
// so that resolving or joining it finds it afterwards.
func (s *Server) askServiceForAlias(ctx context.Context, alias string) {
	if s.appservices == nil || !strings.HasSuffix(alias, ":"+s.cfg.ServerName) {
		return
	}
	if _, _, err := s.db.Alias(ctx, alias); errors.Is(err, storage.ErrNotFound) {
		s.appservices.QueryAlias(ctx, alias)
	}
}

// askServiceForUser asks the services of an unknown local user's namespace to create it.
func (s *Server) askServiceForUser(ctx context.Context, userID string) bool {
	if s.appservices == nil {
		return false
	}
	return s.appservices.QueryUser(ctx, userID)
}

// appServiceDevices reports whether the request is a service's managing a device of one of
// its users without user-interactive authentication (Client-Server API "Device management"
// for application services, MSC4190).
func appServiceDevices(r *http.Request) bool {
	svc := appservice.FromContext(r.Context())
	return svc != nil && svc.OwnsUser(httputil.Device(r.Context()).UserID)
}

// handleAppServicePing handles POST /_matrix/client/v1/appservice/{appserviceId}/ping.
func (s *Server) handleAppServicePing(r *http.Request) (any, error) {
	var req struct {
		TransactionID string `json:"transaction_id"`
	}
	// The body is an object whose one field is optional: an empty body is {}.
	body, err := httputil.ReadBody(r)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := httputil.UnmarshalObject(body, &req); err != nil {
			return nil, err
		}
	}
	if s.appservices == nil {
		return nil, spec.Forbidden("only application services may ping")
	}
	return s.appservices.Ping(r.Context(), appservice.FromContext(r.Context()), httputil.PathVar(r, "appserviceId"), req.TransactionID)
}

// handleThirdPartyProtocol handles GET /thirdparty/protocol/{protocol}.
func (s *Server) handleThirdPartyProtocol(r *http.Request) (any, error) {
	if s.appservices == nil {
		return nil, spec.NotFound("unknown protocol")
	}
	return s.appservices.Protocol(r.Context(), httputil.PathVar(r, "protocol"))
}

// handleThirdPartyLookup handles GET /thirdparty/{location,user}[/{protocol}].
func (s *Server) handleThirdPartyLookup(r *http.Request) (any, error) {
	kind := "user"
	if strings.Contains(r.URL.Path, "/thirdparty/location") {
		kind = "location"
	}
	protocol := httputil.PathVar(r, "protocol")
	if s.appservices == nil {
		if protocol != "" {
			return nil, spec.NotFound("unknown protocol")
		}
		return []any{}, nil
	}
	q := r.URL.Query()
	for _, k := range []string{"access_token", "user_id", "device_id", "org.matrix.msc3202.device_id"} {
		q.Del(k) // the caller's own parameters, not the lookup's
	}
	return s.appservices.ThirdPartyLookup(r.Context(), kind, protocol, q)
}

// authType returns the type of a request's auth object, or "".
func authType(auth json.RawMessage) string {
	var a struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(auth, &a)
	return a.Type
}

// massagedSender returns the sender of a send or state request, with the timestamp an
// application service asked for (Application Service API, "Timestamp massaging": ?ts=).
func massagedSender(r *http.Request) (roomserver.Sender, error) {
	from := sender(r)
	raw := r.URL.Query().Get("ts")
	if raw == "" || appservice.FromContext(r.Context()) == nil {
		return from, nil
	}
	ts, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || ts <= 0 || ts > 1<<53-1 {
		return from, spec.InvalidParam("ts must be a timestamp in milliseconds")
	}
	from.TS = ts
	return from, nil
}

// appServiceUnlimited reports whether the request is an application service's for a user
// that is not rate-limited: its sender always, its other users unless rate_limited.
func appServiceUnlimited(ctx context.Context, userID string) bool {
	svc := appservice.FromContext(ctx)
	return svc != nil && (userID == svc.SenderID || !svc.RateLimited)
}

// appServiceAlias reports whether the request is an application service's for an alias of
// its aliases namespaces.
func appServiceAlias(ctx context.Context, alias string) bool {
	svc := appservice.FromContext(ctx)
	return svc != nil && svc.InAliases(alias)
}

// createAppServiceDevice creates a device of a service's user for PUT /devices/{deviceId}
// (MSC4190): the service acts as it with ?device_id=, so the device gets no access token
// anyone knows. The answer is 201.
func (s *Server) createAppServiceDevice(r *http.Request, displayName *string) (any, error) {
	dev := httputil.Device(r.Context())
	deviceID := httputil.PathVar(r, "deviceId")
	if deviceID == "" || len(deviceID) > 255 {
		return nil, spec.InvalidParam("invalid device ID")
	}
	name := ""
	if displayName != nil {
		name = *displayName
	}
	var pos int64
	err := s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		d := storage.Device{UserID: dev.UserID, DeviceID: deviceID, DisplayName: name, CreatedTS: time.Now().UnixMilli(), LastSeenIP: clientIP(r)}
		if err := tx.UpsertDevice(r.Context(), d, httputil.HashToken(httputil.NewAccessToken())); err != nil {
			return err
		}
		var err error
		pos, err = tx.DeviceListChanged(r.Context(), dev.UserID)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.deviceListChanged(r.Context(), dev.UserID, pos, deviceID)
	return httputil.Response{Status: http.StatusCreated, Body: struct{}{}}, nil
}

// networkDirectory points a /publicRooms listing at the application services' network
// directories: one network's with third_party_instance_id ("{service}|{network}", the
// instance_id of /thirdparty/protocols), the server's and every network's with
// include_all_networks.
func (s *Server) networkDirectory(list *publicrooms.Request, req publicRoomsRequest) error {
	switch {
	case req.IncludeAllNetworks && req.ThirdPartyInstanceID != "":
		return spec.InvalidParam("third_party_instance_id cannot be used with include_all_networks")
	case req.IncludeAllNetworks:
		list.Rooms = func(ctx context.Context, offset, limit int) ([]storage.PublicRoom, int, error) {
			return s.db.NetworkPublicRooms(ctx, "", "", offset, limit)
		}
	case req.ThirdPartyInstanceID != "":
		serviceID, networkID, _ := strings.Cut(req.ThirdPartyInstanceID, "|")
		list.Rooms = func(ctx context.Context, offset, limit int) ([]storage.PublicRoom, int, error) {
			return s.db.NetworkPublicRooms(ctx, serviceID, networkID, offset, limit)
		}
	}
	return nil
}

// handleSetNetworkVisibility handles PUT /directory/list/appservice/{networkId}/{roomId}:
// an application service publishes a room in its network's directory.
func (s *Server) handleSetNetworkVisibility(r *http.Request) (any, error) {
	svc := appservice.FromContext(r.Context())
	if svc == nil {
		return nil, spec.Forbidden("only application services may use this endpoint")
	}
	room, visibility, err := s.visibilityRequest(r)
	if err != nil {
		return nil, err
	}
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		return tx.SetAppServiceRoomVisibility(r.Context(), svc.ID, httputil.PathVar(r, "networkId"), room.NID, visibility == "public")
	})
	return struct{}{}, err
}
