package clientapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/storage"
)

// Registration tokens made with the admin API (storage.RegistrationToken), beside the static
// registration.tokens of the config: the m.login.registration_token stage of /register and
// the spec's validity check.

// reserveRegistrationToken counts a pending use of a database token, or answers the stage
// failed when the token is unknown, used up or expired.
func (s *Server) reserveRegistrationToken(ctx context.Context, token string) (string, error) {
	var ok bool
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		var err error
		ok, err = tx.ReserveRegistrationToken(ctx, token, time.Now().UnixMilli())
		return err
	})
	if err != nil {
		return "", err
	}
	if !ok {
		return "", s.uiaRequired([][]string{{"m.login.registration_token"}}, "invalid registration token")
	}
	return token, nil
}

// finishRegistrationToken turns the pending use into a completed one, or gives it back.
func (s *Server) finishRegistrationToken(ctx context.Context, token string, completed bool) error {
	ctx = context.WithoutCancel(ctx) // the account exists or not: the count must follow
	return s.db.WithTx(ctx, func(tx *storage.Tx) error {
		return tx.FinishRegistrationToken(ctx, token, completed)
	})
}

// handleRegistrationTokenValidity handles GET /v1/register/m.login.registration_token/validity:
// 403 M_FORBIDDEN unless registration takes tokens; valid is false for an unknown token.
func (s *Server) handleRegistrationTokenValidity(r *http.Request) (any, error) {
	if s.cfg.Registration.Mode != config.RegistrationToken {
		return nil, spec.Forbidden("registration is not enabled with tokens on this homeserver")
	}
	if ok, wait := s.registrations.Allow(clientIP(r)); !ok {
		return nil, spec.LimitExceeded("too many requests from this address", wait.Milliseconds())
	}
	token, present := r.URL.Query()["token"]
	if !present {
		return nil, spec.MissingParam("token is required")
	}
	for _, t := range s.cfg.Registration.Tokens {
		if t == token[0] {
			return map[string]bool{"valid": true}, nil
		}
	}
	t, err := s.db.RegistrationToken(r.Context(), token[0])
	if errors.Is(err, storage.ErrNotFound) {
		return map[string]bool{"valid": false}, nil
	} else if err != nil {
		return nil, err
	}
	return map[string]bool{"valid": t.Valid(time.Now().UnixMilli())}, nil
}
