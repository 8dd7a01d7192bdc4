package appservice

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

type serviceKey struct{}

// FromContext returns the application service that made the request, or nil: set when the
// request's access token is a service's as_token.
func FromContext(ctx context.Context) *Service {
	s, _ := ctx.Value(serviceKey{}).(*Service)
	return s
}

// Authenticate wraps the client API's router: a request whose access token is an as_token
// is made by that service, acting as the user of its user_id parameter (by default its
// sender) and the device of its device_id parameter (Application Service API, "Identity
// assertion"). The identity is put in the request context, where httputil.Authenticate
// finds it; every other request passes through untouched, so an ordinary token costs one
// comparison per registered service.
func (s *Server) Authenticate(next http.Handler) http.Handler {
	if len(s.registry().list) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := httputil.AccessToken(r)
		if tok == "" {
			next.ServeHTTP(w, r)
			return
		}
		svc := s.registry().ByToken(tok)
		if svc == nil {
			next.ServeHTTP(w, r)
			return
		}
		ctx := context.WithValue(r.Context(), serviceKey{}, svc)
		dev, err := s.assertIdentity(ctx, svc, r)
		if err != nil {
			httputil.WriteError(w, r, s.log, err)
			return
		}
		if ri := httputil.Info(ctx); ri != nil {
			ri.UserID, ri.DeviceID = dev.UserID, dev.DeviceID
		}
		next.ServeHTTP(w, r.WithContext(httputil.WithDevice(ctx, dev)))
	})
}

// assertIdentity returns the device a service's request acts as.
func (s *Server) assertIdentity(ctx context.Context, svc *Service, r *http.Request) (*storage.Device, error) {
	q := r.URL.Query()
	userID := q.Get("user_id")
	if userID == "" {
		userID = svc.SenderID
	}
	if !s.registry().MayUseUser(svc, userID) {
		return nil, spec.Forbidden("the application service cannot masquerade as " + userID + ": not in its namespace")
	}
	deviceID := q.Get("device_id")
	if deviceID == "" {
		deviceID = q.Get("org.matrix.msc3202.device_id")
	}
	if isRegistration(r.URL.Path) {
		// POST /register (m.login.application_service) creates the user named in its body;
		// POST /login logs one in: neither needs the asserted user to exist yet.
		return &storage.Device{UserID: userID, DeviceID: deviceID}, nil
	}
	acc, err := s.db.Account(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && acc.Deactivated) {
		return nil, spec.Forbidden("the application service has not registered " + userID)
	} else if err != nil {
		return nil, err
	}
	if deviceID == "" {
		return &storage.Device{UserID: userID}, nil
	}
	dev, err := s.db.Device(ctx, userID, deviceID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, &httputil.Error{Status: http.StatusBadRequest, Code: "M_UNKNOWN_DEVICE", Msg: "device " + deviceID + " does not belong to " + userID}
	} else if err != nil {
		return nil, err
	}
	return dev, nil
}

// isRegistration reports whether path is the client API's /register or /login.
func isRegistration(path string) bool {
	rest, ok := strings.CutPrefix(path, "/_matrix/client/")
	if !ok {
		return false
	}
	_, rest, _ = strings.Cut(rest, "/")
	return rest == "register" || rest == "login"
}
