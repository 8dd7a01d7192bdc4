package clientapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/storage"
)

// User-interactive authentication sessions of signed-in users are bound to the request that
// started them ("User-interactive authentication API": the session is for "subsequent
// attempts to authenticate in the same API call"). Each one issued is a row of uia_sessions
// with the user, the method, the path and a description in words; a session presented with
// another request or by another user is refused with 403, one never issued (or expired, or
// used) gets a new 401. The m.login.sso fallback page (package sso) reads the description to
// tell the user what they approve, and refuses sessions it does not know.

// uiaSessionTTL is how long an issued session may be used.
const uiaSessionTTL = 30 * time.Minute

// uiaOperation is the request a session is bound to.
type uiaOperation struct{ method, path string }

type uiaOperationKey struct{}

// uiaContext is r's context carrying the request's method and path (r0 spelled v3), for the
// sessions requirePassword issues and checks. Only the handlers that run user-interactive
// authentication derive it, so that no other request pays for it.
func uiaContext(r *http.Request) context.Context {
	path := r.URL.Path
	if rest, ok := strings.CutPrefix(path, "/_matrix/client/r0/"); ok {
		path = "/_matrix/client/v3/" + rest
	}
	return context.WithValue(r.Context(), uiaOperationKey{}, uiaOperation{r.Method, path})
}

func operationOf(ctx context.Context) uiaOperation {
	op, _ := ctx.Value(uiaOperationKey{}).(uiaOperation)
	return op
}

// describeOperation says in words what a request that needs user-interactive authentication
// does, for "A client is trying to ...".
func describeOperation(op uiaOperation) string {
	p := strings.TrimPrefix(op.path, "/_matrix/client/")
	_, p, _ = strings.Cut(p, "/") // the version
	switch {
	case op.method == http.MethodPost && p == "delete_devices":
		return "sign out some of your devices"
	case op.method == http.MethodDelete && strings.HasPrefix(p, "devices/"):
		// The device ID is the client's choice: quoted and cut short, so that it reads as
		// a name and not as part of the sentence.
		id := []rune(strings.TrimPrefix(p, "devices/"))
		if len(id) > 24 {
			id = append(id[:24], '…')
		}
		return fmt.Sprintf("sign out the device %q", string(id))
	case p == "account/password":
		return "change your password"
	case p == "account/deactivate":
		return "deactivate your account"
	case p == "keys/device_signing/upload":
		return "replace your cross-signing keys"
	case p == "login/get_token":
		return "sign in on another device"
	case strings.HasPrefix(p, "account/3pid"):
		return "change the email addresses or phone numbers of your account"
	}
	return "make the request " + op.method + " " + op.path
}

// issueUIASession records a new session for userID's current request and returns its ID.
func (s *Server) issueUIASession(ctx context.Context, userID string) (string, error) {
	op := operationOf(ctx)
	now := time.Now()
	sess := storage.UIASession{SessionID: config.RandomSecret(18), UserID: userID, Method: op.method, Path: op.path,
		Description: describeOperation(op), ExpiresTS: now.Add(uiaSessionTTL).UnixMilli()}
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.InsertUIASession(ctx, sess, now.UnixMilli()) })
	return sess.SessionID, err
}

// uiaRequiredFor is the 401 with a new session bound to userID's current request.
func (s *Server) uiaRequiredFor(ctx context.Context, userID string, flows [][]string, errMsg string) error {
	session, err := s.issueUIASession(ctx, userID)
	if err != nil {
		return err
	}
	return s.uiaRequiredSession(flows, errMsg, session)
}

// errUnknownUIASession is checkUIASession's answer for a session that was never issued, was
// used, or expired: the caller starts a new one.
var errUnknownUIASession = errors.New("unknown UIA session")

// checkUIASession checks that session was issued to userID for the current request.
func (s *Server) checkUIASession(ctx context.Context, userID, session string) error {
	sess, err := s.db.UIASession(ctx, session, time.Now().UnixMilli())
	if errors.Is(err, storage.ErrNotFound) {
		return errUnknownUIASession
	} else if err != nil {
		return err
	}
	if op := operationOf(ctx); sess.UserID != userID || sess.Method != op.method || sess.Path != op.path {
		return spec.Forbidden("this authentication session was started for another request")
	}
	return nil
}

// endUIASession forgets a session whose request is authenticated: a session is good once.
func (s *Server) endUIASession(ctx context.Context, session string) error {
	if session == "" {
		return nil
	}
	return s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.DeleteUIASession(ctx, session) })
}
