package clientapi

import (
	"context"
	"errors"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// The m.login.sso stage of user-interactive authentication: the client opens
// /_matrix/client/v3/auth/m.login.sso/fallback/web?session=... (served by the sso package),
// the user signs in again at their identity provider, the sso package records the session as
// completed by the user the identity is linked to (uia_sso_completions), and the client
// retries its request with the session, which checkSSOStage accepts once.

// userAuthFlows returns the UIA flows a user can complete: the password, and single sign-on
// when the user is linked to a configured provider (then the password only if the account
// has one). sso reports whether the m.login.sso flow is offered.
func (s *Server) userAuthFlows(ctx context.Context, userID string) (flows [][]string, sso bool) {
	sso = s.ssoLinked(ctx, userID)
	hasPassword := true
	if sso {
		acc, err := s.db.Account(ctx, userID)
		hasPassword = err != nil || acc.PasswordHash != ""
	}
	if hasPassword {
		flows = append(flows, []string{"m.login.password"})
	}
	if sso {
		flows = append(flows, []string{"m.login.sso"})
	}
	return flows, sso
}

// ssoLinked reports whether userID has an external ID at a configured provider.
func (s *Server) ssoLinked(ctx context.Context, userID string) bool {
	if len(s.cfg.SSO.Providers) == 0 {
		return false
	}
	ids, err := s.db.ExternalIDs(ctx, userID)
	if err != nil {
		return false
	}
	for _, e := range ids {
		for _, p := range s.cfg.SSO.Providers {
			if p.ID == e.AuthProvider {
				return true
			}
		}
	}
	return false
}

// checkSSOStage accepts a session (one issued for this request: requirePassword checked)
// whose m.login.sso stage userID completed; a session not completed yet gets the 401 again
// with the same session, so the client can keep waiting.
func (s *Server) checkSSOStage(ctx context.Context, userID, session string, flows [][]string) error {
	if session == "" {
		return s.uiaRequiredFor(ctx, userID, flows, "")
	}
	var who string
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		var err error
		who, err = tx.TakeUIASSOCompletion(ctx, session, time.Now().UnixMilli())
		return err
	})
	if errors.Is(err, storage.ErrNotFound) {
		return s.uiaRequiredSession(flows, "", session)
	} else if err != nil {
		return err
	}
	if who != userID {
		return spec.Forbidden("you can only authenticate as yourself")
	}
	return nil
}
