package adminapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// Registration tokens: Synapse's registration_tokens.md. The tokens are those of the
// m.login.registration_token stage of /register when registration.mode is "token"; the
// config's registration.tokens are not listed here.
func (s *Server) registrationTokenRoutes() []route {
	return []route{
		{http.MethodGet, "/v1/registration_tokens", s.handleListRegistrationTokens, false},
		{http.MethodPost, "/v1/registration_tokens/new", s.handleNewRegistrationToken, false},
		{http.MethodGet, "/v1/registration_tokens/{token}", s.handleGetRegistrationToken, false},
		{http.MethodPut, "/v1/registration_tokens/{token}", s.handleUpdateRegistrationToken, false},
		{http.MethodDelete, "/v1/registration_tokens/{token}", s.handleDeleteRegistrationToken, false},
	}
}

// validRegistrationToken is the token grammar: at most 64 of [A-Za-z0-9._~-].
var validRegistrationToken = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,64}$`)

// handleListRegistrationTokens handles GET /v1/registration_tokens?valid=true|false.
func (s *Server) handleListRegistrationTokens(r *http.Request) (any, error) {
	var want *bool
	switch v := r.URL.Query().Get("valid"); v {
	case "":
	case "true", "false":
		b := v == "true"
		want = &b
	default:
		return nil, spec.InvalidParam("valid must be true or false")
	}
	all, err := s.db.RegistrationTokens(r.Context())
	if err != nil {
		return nil, err
	}
	now := time.Now().UnixMilli()
	out := make([]*storage.RegistrationToken, 0, len(all))
	for _, t := range all {
		if want == nil || t.Valid(now) == *want {
			out = append(out, t)
		}
	}
	return map[string]any{"registration_tokens": out}, nil
}

// optionalInt reads a JSON field that may be absent, null or an integer (>= 0 unless neg).
func optionalInt(fields map[string]json.RawMessage, name string) (present bool, v *int64, err error) {
	raw, ok := fields[name]
	if !ok {
		return false, nil, nil
	}
	if string(raw) == "null" {
		return true, nil, nil
	}
	var n int64
	if json.Unmarshal(raw, &n) != nil || n < 0 {
		return true, nil, spec.InvalidParam(name + " must be a non-negative integer or null")
	}
	return true, &n, nil
}

// tokenLimits reads uses_allowed and expiry_time of a request body.
func tokenLimits(fields map[string]json.RawMessage) (usesSet bool, uses *int64, expirySet bool, expiry *int64, err error) {
	if usesSet, uses, err = optionalInt(fields, "uses_allowed"); err != nil {
		return
	}
	if expirySet, expiry, err = optionalInt(fields, "expiry_time"); err != nil {
		return
	}
	if expiry != nil && *expiry < time.Now().UnixMilli() {
		err = spec.InvalidParam("expiry_time must not be in the past")
	}
	return
}

// handleNewRegistrationToken handles POST /v1/registration_tokens/new
// {token, uses_allowed, expiry_time, length}.
func (s *Server) handleNewRegistrationToken(r *http.Request) (any, error) {
	var fields map[string]json.RawMessage
	if err := httputil.DecodeJSON(r, &fields); err != nil {
		return nil, err
	}
	_, uses, _, expiry, err := tokenLimits(fields)
	if err != nil {
		return nil, err
	}
	t := storage.RegistrationToken{UsesAllowed: uses, ExpiryTime: expiry}
	if raw, ok := fields["token"]; ok {
		if json.Unmarshal(raw, &t.Token) != nil || !validRegistrationToken.MatchString(t.Token) {
			return nil, spec.InvalidParam("token must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '~' and '-'")
		}
	}
	if t.Token == "" {
		length := int64(16)
		if raw, ok := fields["length"]; ok {
			if json.Unmarshal(raw, &length) != nil || length < 1 || length > 64 {
				return nil, spec.InvalidParam("length must be an integer between 1 and 64")
			}
		}
		err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
			// A random token that happens to exist is drawn again.
			for range 5 {
				t.Token = randomToken(int(length))
				if err := tx.InsertRegistrationToken(r.Context(), t); !errors.Is(err, storage.ErrConflict) {
					return err
				}
			}
			return fmt.Errorf("no free registration token of length %d", length)
		})
	} else {
		err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error { return tx.InsertRegistrationToken(r.Context(), t) })
		if errors.Is(err, storage.ErrConflict) {
			return nil, spec.InvalidParam("token already exists: " + t.Token)
		}
	}
	if err != nil {
		return nil, err
	}
	s.audit(r, "create registration token", "token", t.Token)
	return t, nil
}

// randomToken returns n random characters of the token grammar (unpadded base64url, whose
// 64 characters it allows, so that each is drawn evenly).
func randomToken(n int) string {
	return config.RandomSecret(n)[:n]
}

// registrationToken returns the token {token}, or 404 M_NOT_FOUND.
func (s *Server) registrationToken(r *http.Request) (*storage.RegistrationToken, error) {
	token := httputil.PathVar(r, "token")
	t, err := s.db.RegistrationToken(r.Context(), token)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("no such registration token: " + token)
	}
	return t, err
}

// handleGetRegistrationToken handles GET /v1/registration_tokens/{token}.
func (s *Server) handleGetRegistrationToken(r *http.Request) (any, error) {
	return s.registrationToken(r)
}

// handleUpdateRegistrationToken handles PUT /v1/registration_tokens/{token}
// {uses_allowed, expiry_time}: an omitted field is left as it is, null means unlimited.
func (s *Server) handleUpdateRegistrationToken(r *http.Request) (any, error) {
	t, err := s.registrationToken(r)
	if err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if err := httputil.DecodeJSON(r, &fields); err != nil {
		return nil, err
	}
	usesSet, uses, expirySet, expiry, err := tokenLimits(fields)
	if err != nil {
		return nil, err
	}
	if usesSet {
		t.UsesAllowed = uses
	}
	if expirySet {
		t.ExpiryTime = expiry
	}
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		return tx.UpdateRegistrationToken(r.Context(), t.Token, t.UsesAllowed, t.ExpiryTime)
	})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("no such registration token: " + t.Token)
	} else if err != nil {
		return nil, err
	}
	s.audit(r, "update registration token", "token", t.Token)
	return s.registrationToken(r)
}

// handleDeleteRegistrationToken handles DELETE /v1/registration_tokens/{token}.
func (s *Server) handleDeleteRegistrationToken(r *http.Request) (any, error) {
	token := httputil.PathVar(r, "token")
	err := s.db.WithTx(r.Context(), func(tx *storage.Tx) error { return tx.DeleteRegistrationToken(r.Context(), token) })
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("no such registration token: " + token)
	} else if err != nil {
		return nil, err
	}
	s.audit(r, "delete registration token", "token", token)
	return struct{}{}, nil
}
