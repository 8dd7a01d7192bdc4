package httputil

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

type deviceKey struct{}

// Device returns the authenticated device of a request that passed Authenticate.
func Device(ctx context.Context) *storage.Device {
	d, _ := ctx.Value(deviceKey{}).(*storage.Device)
	return d
}

// WithDevice returns ctx carrying d.
func WithDevice(ctx context.Context, d *storage.Device) context.Context {
	return context.WithValue(ctx, deviceKey{}, d)
}

// NewAccessToken returns a fresh access token: 32 random bytes, URL-safe base64.
func NewAccessToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "lat_" + base64.RawURLEncoding.EncodeToString(b)
}

// HashToken is how access tokens are stored: only their SHA-256.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// AccessToken extracts the access token from the Authorization header or the deprecated
// access_token query parameter.
func AccessToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(tok)
		}
		return ""
	}
	return r.URL.Query().Get("access_token")
}

// DeviceLookup finds the device holding a token hash.
type DeviceLookup interface {
	DeviceByToken(ctx context.Context, tokenHash string) (*storage.Device, error)
}

// Authenticate wraps h so that it runs only for a request with a valid access token, with the
// device in the request context. A missing token is M_MISSING_TOKEN, an unknown one
// M_UNKNOWN_TOKEN, both 401.
func Authenticate(log *slog.Logger, devices DeviceLookup, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if Device(r.Context()) != nil {
			// An application service's request, whose identity the appservice middleware in
			// front of the router already asserted (the as_token is no device's token).
			h.ServeHTTP(w, r)
			return
		}
		tok := AccessToken(r)
		if tok == "" {
			WriteError(w, r, log, spec.MissingToken("missing access token"))
			return
		}
		dev, err := devices.DeviceByToken(r.Context(), HashToken(tok))
		if errors.Is(err, storage.ErrTokenExpired) {
			// The session lives on: its refresh token gets a new access token (soft logout).
			WriteJSON(w, http.StatusUnauthorized, map[string]any{"errcode": "M_UNKNOWN_TOKEN", "error": "access token expired", "soft_logout": true})
			return
		} else if errors.Is(err, storage.ErrNotFound) {
			WriteJSON(w, http.StatusUnauthorized, map[string]any{"errcode": "M_UNKNOWN_TOKEN", "error": "unknown access token", "soft_logout": false})
			return
		} else if err != nil {
			WriteError(w, r, log, err)
			return
		}
		if ri := Info(r.Context()); ri != nil {
			ri.UserID, ri.DeviceID = dev.UserID, dev.DeviceID
		}
		if dev.Locked && !isLogout(r.URL.Path) {
			// Client-Server API, "Account locking": every endpoint but the two logouts.
			WriteJSON(w, http.StatusUnauthorized, map[string]any{"errcode": "M_USER_LOCKED", "error": "this account has been locked", "soft_logout": true})
			return
		}
		if seer, ok := devices.(DeviceSeer); ok && !dev.Puppet {
			seer.DeviceSeen(dev.UserID, dev.DeviceID, RemoteIP(r), r.UserAgent())
		}
		h.ServeHTTP(w, r.WithContext(WithDevice(r.Context(), dev)))
	})
}

// DeviceSeer records that a device made a request (storage.DB.DeviceSeen): when, from which
// address and with which User-Agent, for the device lists and whois. It must not block: the
// write happens behind, throttled. Requests with an admin's puppet token (login as a user)
// are not the user's own and are not recorded.
type DeviceSeer interface {
	DeviceSeen(userID, deviceID, ip, userAgent string)
}

// RemoteIP is the address the request came from, without its port.
func RemoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// isLogout reports whether path is POST /logout or /logout/all of the client API, which a
// locked account may still call.
func isLogout(path string) bool {
	rest, ok := strings.CutPrefix(path, "/_matrix/client/")
	if !ok {
		return false
	}
	_, rest, _ = strings.Cut(rest, "/")
	return rest == "logout" || rest == "logout/all"
}
