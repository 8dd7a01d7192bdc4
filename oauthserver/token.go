package oauthserver

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/lattice-chat/lattice/clientapi"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// The token endpoint (RFC 6749 section 3.2) for the authorization code, refresh token and
// device code grants, and the revocation endpoint (RFC 7009).

// readTokenForm parses an application/x-www-form-urlencoded body; false (answered) when it
// is not one.
func readTokenForm(w http.ResponseWriter, r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	if !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		oauthJSON(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthJSON(w, http.StatusBadRequest, "invalid_request", "cannot read the form")
		return false
	}
	// RFC 6749 section 3.2: "Request and response parameters MUST NOT be included more than
	// once."
	for k, v := range r.PostForm {
		if len(v) > 1 {
			oauthJSON(w, http.StatusBadRequest, "invalid_request", k+" is given more than once")
			return false
		}
	}
	return true
}

// handleToken handles POST to the token endpoint.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if !readTokenForm(w, r) {
		return
	}
	f := r.PostForm
	c := s.loadClient(r, f.Get("client_id"))
	if c == nil {
		oauthJSON(w, http.StatusUnauthorized, "invalid_client", "unknown client_id")
		return
	}
	grant := f.Get("grant_type")
	if grant == "" {
		oauthJSON(w, http.StatusBadRequest, "invalid_request", "grant_type is required")
		return
	}
	if grant != grantAuthorizationCode && grant != grantRefreshToken && grant != grantDeviceCode {
		oauthJSON(w, http.StatusBadRequest, "unsupported_grant_type", "unsupported grant_type")
		return
	}
	// The client metadata's grant_types "MUST include ... the refresh_token value to use the
	// refresh token grant."
	if !containsGrant(c, grant) {
		oauthJSON(w, http.StatusBadRequest, "unauthorized_client", "the client did not register this grant type")
		return
	}
	switch grant {
	case grantAuthorizationCode:
		s.exchangeCode(w, r, c)
	case grantRefreshToken:
		s.refresh(w, r, c)
	default:
		s.pollDeviceCode(w, r, c)
	}
}

func containsGrant(c *client, g string) bool {
	for _, x := range c.GrantTypes {
		if x == g {
			return true
		}
	}
	return false
}

// exchangeCode answers the authorization code grant: the code is taken (so used once)
// before anything else is checked, and must match the client, redirect URI and verifier.
func (s *Server) exchangeCode(w http.ResponseWriter, r *http.Request, c *client) {
	f := r.PostForm
	code, verifier := f.Get("code"), f.Get("code_verifier")
	if code == "" || verifier == "" || f.Get("redirect_uri") == "" {
		oauthJSON(w, http.StatusBadRequest, "invalid_request", "code, redirect_uri and code_verifier are required")
		return
	}
	var g *storage.OAuthGrant
	hash := httputil.HashToken(code)
	err := s.db.WithTx(ctx(r), func(tx *storage.Tx) error {
		var err error
		g, err = tx.UseOAuthCode(ctx(r), hash)
		return err
	})
	var used *storage.ErrCodeUsed
	if errors.As(err, &used) {
		// RFC 6749 section 4.1.2: "If an authorization code is used more than once, the
		// authorization server MUST deny the request and SHOULD revoke (when possible) all
		// tokens previously issued based on that authorization code."
		if used.DeviceID != "" {
			s.log.Warn("authorization code used again: session ended", "user_id", used.UserID, "device_id", used.DeviceID)
			if err := s.accounts.EndSession(ctx(r), used.UserID, used.DeviceID); err != nil {
				s.serverError(w, err)
				return
			}
		}
		oauthJSON(w, http.StatusBadRequest, "invalid_grant", "unknown or already used code")
		return
	} else if errors.Is(err, storage.ErrNotFound) {
		oauthJSON(w, http.StatusBadRequest, "invalid_grant", "unknown or already used code")
		return
	} else if err != nil {
		s.serverError(w, err)
		return
	}
	switch {
	case time.Now().UnixMilli() >= g.ExpiresTS:
		oauthJSON(w, http.StatusBadRequest, "invalid_grant", "the code expired")
	case g.ClientID != c.ID:
		oauthJSON(w, http.StatusBadRequest, "invalid_grant", "the code was issued to another client")
	case g.RedirectURI != f.Get("redirect_uri"):
		oauthJSON(w, http.StatusBadRequest, "invalid_grant", "redirect_uri differs from the authorization request's")
	case !pkceMatches(verifier, g.CodeChallenge):
		oauthJSON(w, http.StatusBadRequest, "invalid_grant", "code_verifier does not match the code challenge")
	default:
		s.issue(w, r, c, g, hash)
	}
}

// issue begins the session of an approved grant and answers with its tokens. codeHash is the
// authorization code's hash for the code grant (the code remembers the session's device).
func (s *Server) issue(w http.ResponseWriter, r *http.Request, c *client, g *storage.OAuthGrant, codeHash string) {
	scope, err := parseScope(g.Scope)
	if err != nil {
		oauthJSON(w, http.StatusBadRequest, "invalid_scope", err.Error())
		return
	}
	// The account may have been deactivated or locked since the user approved.
	if u, err := s.db.User(r.Context(), g.UserID); err != nil || u.Deactivated || u.Locked {
		oauthJSON(w, http.StatusBadRequest, "invalid_grant", "the account cannot sign in")
		return
	}
	lang, _ := messagesFor(r)
	sess, err := s.accounts.StartSession(ctx(r), g.UserID, scope.DeviceID, c.name(lang), httputil.RemoteIP(r), c.ID)
	if err != nil {
		s.serverError(w, err)
		return
	}
	err = s.db.WithTx(ctx(r), func(tx *storage.Tx) error {
		if codeHash != "" {
			if err := tx.SetOAuthCodeDevice(ctx(r), codeHash, sess.DeviceID); err != nil {
				return err
			}
		}
		return tx.SetDeviceOAuthScope(ctx(r), g.UserID, sess.DeviceID, scope.Granted)
	})
	if err != nil {
		s.serverError(w, err)
		return
	}
	resp := tokenResponse(sess, scope.Granted)
	if scope.OpenID {
		if resp["id_token"], err = s.signer.idToken(s.baseURL(r)+"/", c.ID, g.UserID, g.Nonce, time.Now()); err != nil {
			s.serverError(w, err)
			return
		}
	}
	writeTokens(w, resp)
}

func tokenResponse(sess *clientapi.Session, scope string) map[string]any {
	return map[string]any{
		"access_token": sess.AccessToken, "token_type": "Bearer", "expires_in": int64(sess.ExpiresIn.Seconds()),
		"refresh_token": sess.RefreshToken, "scope": scope,
	}
}

func writeTokens(w http.ResponseWriter, resp map[string]any) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	httputil.WriteJSON(w, http.StatusOK, resp)
}

// refresh answers the refresh token grant: both tokens rotate (clientapi.RefreshSession).
func (s *Server) refresh(w http.ResponseWriter, r *http.Request, c *client) {
	rt := r.PostForm.Get("refresh_token")
	if rt == "" {
		oauthJSON(w, http.StatusBadRequest, "invalid_request", "refresh_token is required")
		return
	}
	sess, err := s.accounts.RefreshSession(ctx(r), rt, c.ID)
	if errors.Is(err, clientapi.ErrUnknownRefreshToken) {
		oauthJSON(w, http.StatusBadRequest, "invalid_grant", "unknown, used or revoked refresh token")
		return
	} else if err != nil {
		s.serverError(w, err)
		return
	}
	scope, err := s.db.DeviceOAuthScope(ctx(r), sess.UserID, sess.DeviceID)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.serverError(w, err)
		return
	} else if scope == "" {
		scope = sessionScope(sess.DeviceID)
	}
	writeTokens(w, tokenResponse(sess, scope))
}

func (s *Server) serverError(w http.ResponseWriter, err error) {
	s.log.Error("oauth token endpoint", "err", err)
	oauthJSON(w, http.StatusInternalServerError, "server_error", "internal error")
}

// handleRevoke handles POST to the revocation endpoint (RFC 7009): the session holding the
// access or refresh token ends as with /logout (its device goes). "If the client_id is not
// provided, or does not match the client associated with the token, the server SHOULD still
// revoke the token." An unknown token is not an error.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	if !readTokenForm(w, r) {
		return
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		oauthJSON(w, http.StatusBadRequest, "invalid_request", "token is required")
		return
	}
	hash := httputil.HashToken(tok)
	lookups := []func() (*storage.Device, error){
		func() (*storage.Device, error) { return s.db.Q.DeviceByToken(r.Context(), hash) },
		func() (*storage.Device, error) { return s.db.DeviceByRefreshToken(r.Context(), hash) },
	}
	if r.PostForm.Get("token_type_hint") == "refresh_token" {
		lookups[0], lookups[1] = lookups[1], lookups[0]
	}
	for _, lookup := range lookups {
		d, err := lookup()
		if errors.Is(err, storage.ErrNotFound) {
			continue
		} else if err != nil {
			s.serverError(w, err)
			return
		}
		if cid := r.PostForm.Get("client_id"); cid != "" && cid != d.OAuthClientID {
			s.log.Warn("token revoked by another client than its own", "user_id", d.UserID, "device_id", d.DeviceID)
		}
		if err := s.accounts.EndSession(ctx(r), d.UserID, d.DeviceID); err != nil {
			s.serverError(w, err)
			return
		}
		break
	}
	w.Header().Set("Cache-Control", "no-store")
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}
