package clientapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// Account moderation by server admins (adminapi): what a suspended or shadow-banned account
// may still do. A locked account is refused earlier, in httputil.Authenticate. The flags
// come with the request's device, so the checks cost no query.

// errSuspended is the spec's answer to an action a suspended account may not take
// (Client-Server API, "Account suspension").
var errSuspended = httputil.Errorf(http.StatusForbidden, "M_USER_SUSPENDED", "you cannot perform this action while suspended")

// notSuspended refuses the request's action when its account is suspended. The spec's
// recommended list of forbidden actions: joining and knocking, accepting and sending invites,
// sending messages (here: every event but redactions of one's own), changing the profile, and
// redacting other users' events; and here also kicks, bans and unbans.
func notSuspended(r *http.Request) error {
	if httputil.Device(r.Context()).Suspended {
		return errSuspended
	}
	return nil
}

// notLocked refuses a new session to a locked account: it "cannot obtain a new access token
// until the account has been unlocked" (Client-Server API, "Soft logout").
func (s *Server) notLocked(ctx context.Context, userID string) error {
	u, err := s.db.User(ctx, userID)
	if err != nil {
		return err
	}
	if u.Locked {
		return errLocked
	}
	return nil
}

// errLocked is the answer to a locked account's login.
var errLocked = &httputil.Error{Status: http.StatusUnauthorized, Code: "M_USER_LOCKED", Msg: "this account has been locked", Extra: map[string]any{"soft_logout": true}}

// mayRedact refuses a suspended account the redaction of another user's event.
func (s *Server) mayRedact(r *http.Request, eventID string) error {
	dev := httputil.Device(r.Context())
	if !dev.Suspended {
		return nil
	}
	ev, err := s.db.Event(r.Context(), eventID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil // the redaction fails on its own
	} else if err != nil {
		return err
	}
	if ev.Sender != dev.UserID {
		return errSuspended
	}
	return nil
}

// shadowBanned reports whether the request's account is shadow-banned: its sends, state
// events, invites and room creations answer as if they succeeded but change nothing, so
// that nobody else ever sees them.
func shadowBanned(r *http.Request) bool {
	return httputil.Device(r.Context()).ShadowBanned
}

// shadowSalt makes the made-up IDs of shadow-banned requests unguessable.
var shadowSalt = func() []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}()

// fakeID returns an ID that looks like a real one of the given sigil and depends only on
// parts: a retried transaction gets the same made-up event ID.
func fakeID(sigil string, parts ...string) string {
	h := sha256.New()
	h.Write(shadowSalt)
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return sigil + base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// fakeEventID is the event ID a shadow-banned account's write is answered with.
func fakeEventID(r *http.Request, parts ...string) string {
	dev := httputil.Device(r.Context())
	return fakeID("$", append([]string{dev.UserID, dev.DeviceID, r.URL.Path}, parts...)...)
}

// allowSend takes one message from the sender's allowance: the admin's override for the
// user if there is one (0 messages per second: no limit), the configured limit otherwise.
func (s *Server) allowSend(ctx context.Context, userID string) error {
	if appServiceUnlimited(ctx, userID) {
		return nil
	}
	rate, burst := s.cfg.Limits.MessagesPerSecond, s.cfg.Limits.MessagesBurst
	o, err := s.db.RateLimitOverride(ctx, userID)
	if err == nil {
		rate, burst = float64(o.MessagesPerSecond), float64(o.BurstCount)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	if rate <= 0 {
		return nil
	}
	if ok, wait := s.sends.AllowRate(userID, rate, max(burst, 1)); !ok {
		return spec.LimitExceeded("too many messages", wait.Milliseconds())
	}
	return nil
}
