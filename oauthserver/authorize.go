package oauthserver

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// The authorization code grant (RFC 6749 section 4.1) with PKCE S256 (RFC 7636), the
// response modes query and fragment, and prompt=create (Client-Server API, "Authorisation
// code flow", "User registration").

// authRequest is an authorization request's parameters.
type authRequest struct {
	ResponseType, ClientID, RedirectURI, Scope, State string
	CodeChallenge, CodeChallengeMethod, ResponseMode  string
	Prompt, Nonce                                     string
	Repeated                                          string // a parameter given more than once
}

var authParams = []string{"response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method", "response_mode", "prompt", "nonce"}

func readAuthRequest(v url.Values) authRequest {
	repeated := ""
	for _, p := range authParams {
		if len(v[p]) > 1 && (repeated == "" || p == "client_id" || p == "redirect_uri") {
			repeated = p
		}
	}
	return authRequest{Repeated: repeated,
		ResponseType: v.Get("response_type"), ClientID: v.Get("client_id"), RedirectURI: v.Get("redirect_uri"),
		Scope: v.Get("scope"), State: v.Get("state"), CodeChallenge: v.Get("code_challenge"),
		CodeChallengeMethod: v.Get("code_challenge_method"), ResponseMode: v.Get("response_mode"), Prompt: v.Get("prompt"),
		Nonce: v.Get("nonce"),
	}
}

func (a authRequest) values() url.Values {
	v := url.Values{}
	for i, val := range []string{a.ResponseType, a.ClientID, a.RedirectURI, a.Scope, a.State, a.CodeChallenge, a.CodeChallengeMethod, a.ResponseMode, a.Prompt, a.Nonce} {
		if val != "" {
			v.Set(authParams[i], val)
		}
	}
	return v
}

// check validates the request. The client and redirect URI are checked first: when either
// is wrong, errKey names the error page to show, and the browser must not be sent back
// (RFC 6749 section 4.1.2.1). Other problems are an OAuth error for the redirect.
func (s *Server) checkAuthRequest(r *http.Request, a authRequest) (c *client, scope *grantScope, errKey, oauthErr, desc string) {
	// RFC 6749 section 3.1: "Request and response parameters MUST NOT be included more than
	// once." Without one client or redirect URI, the browser cannot be sent back.
	if a.Repeated == "client_id" || a.Repeated == "redirect_uri" {
		return nil, nil, "err_bad_request", "", ""
	}
	c = s.loadClient(r, a.ClientID)
	if c == nil {
		return nil, nil, "err_unknown_client", "", ""
	}
	if a.RedirectURI == "" || !c.redirectAllowed(a.RedirectURI) {
		return nil, nil, "err_bad_redirect", "", ""
	}
	if a.Repeated != "" {
		return c, nil, "", "invalid_request", a.Repeated + " is given more than once"
	}
	if a.ResponseMode != "" && a.ResponseMode != "query" && a.ResponseMode != "fragment" {
		return c, nil, "", "invalid_request", "response_mode must be query or fragment"
	}
	if a.ResponseType != "code" || !slices.Contains(c.ResponseTypes, "code") {
		return c, nil, "", "unsupported_response_type", "only the code response type is supported"
	}
	if a.CodeChallenge == "" || a.CodeChallengeMethod != "S256" {
		return c, nil, "", "invalid_request", "PKCE with code_challenge_method S256 is required"
	}
	if b, err := base64.RawURLEncoding.DecodeString(a.CodeChallenge); err != nil || len(b) != sha256.Size {
		return c, nil, "", "invalid_request", "code_challenge must be a base64url SHA-256 (43 characters)"
	}
	scope, err := parseScope(a.Scope)
	if err != nil {
		return c, nil, "", "invalid_scope", err.Error()
	}
	return c, scope, "", "", ""
}

// redirectBack sends the browser to the client's (checked) redirect URI with the answer
// params, in the query or the fragment.
func redirectBack(w http.ResponseWriter, r *http.Request, a authRequest, params url.Values) {
	if a.State != "" {
		params.Set("state", a.State)
	}
	u, _ := url.Parse(a.RedirectURI)
	if a.ResponseMode == "fragment" {
		u.Fragment = ""
		u.RawFragment = ""
		http.Redirect(w, r, u.String()+"#"+params.Encode(), http.StatusSeeOther)
		return
	}
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// handleAuthorize handles GET on the authorization endpoint: after checking the request,
// the browser signs in (or registers, with prompt=create) and then sees the consent page.
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	a := readAuthRequest(r.URL.Query())
	c, scope, errKey, oauthErr, desc := s.checkAuthRequest(r, a)
	if errKey != "" {
		s.errorPage(w, r, http.StatusBadRequest, errKey)
		return
	} else if oauthErr != "" {
		redirectBack(w, r, a, url.Values{"error": {oauthErr}, "error_description": {desc}})
		return
	}
	ws := s.cookies.read(r)
	// OpenID Connect prompt=none: answer without showing a page. Every authorization needs
	// the user's consent on the page, so a signed-in user still needs interaction.
	if prompts := strings.Fields(a.Prompt); slices.Contains(prompts, "none") {
		switch {
		case len(prompts) > 1:
			redirectBack(w, r, a, url.Values{"error": {"invalid_request"}, "error_description": {"prompt none goes with no other value"}})
		case ws == nil || ws.UserID == "":
			redirectBack(w, r, a, url.Values{"error": {"login_required"}, "error_description": {"the user is not signed in"}})
		default:
			redirectBack(w, r, a, url.Values{"error": {"consent_required"}, "error_description": {"the user must approve the client"}})
		}
		return
	}
	if ws == nil || ws.UserID == "" {
		// Come back here without prompt=create once signed in or registered.
		back := a
		back.Prompt = ""
		next := url.QueryEscape(pathAuthorize + "?" + back.values().Encode())
		if a.Prompt == "create" {
			http.Redirect(w, r, pathSignUp+"?next="+next, http.StatusSeeOther)
		} else {
			http.Redirect(w, r, pathLogin+"?next="+next, http.StatusSeeOther)
		}
		return
	}
	s.renderConsent(w, r, ws, c, scope.DeviceID, pathAuthorize, a.values(), r.URL.RequestURI())
}

// consentPage is the consent template's data.
type consentPage struct {
	ClientName, ClientURI, LogoURI, TOSURI, PolicyURI string
	DeviceID                                          string
	Action                                            string
	Hidden                                            map[string]string
	Back                                              string
}

func (s *Server) renderConsent(w http.ResponseWriter, r *http.Request, ws *webSession, c *client, deviceID, action string, hidden url.Values, back string) {
	lang, _ := messagesFor(r)
	loc := func(field, def string) string {
		if v := c.Localised[field+"#"+lang]; v != "" {
			return v
		}
		return def
	}
	p := consentPage{ClientName: c.name(lang), ClientURI: c.ClientURI, LogoURI: loc("logo_uri", c.LogoURI),
		TOSURI: loc("tos_uri", c.TOSURI), PolicyURI: loc("policy_uri", c.PolicyURI),
		DeviceID: deviceID, Action: action, Hidden: map[string]string{}, Back: back}
	for k := range hidden {
		p.Hidden[k] = hidden.Get(k)
	}
	// The answer to the consent form redirects to the client, which browsers check against
	// form-action: allow the (checked) redirect URI's origin too.
	if ru, err := url.Parse(hidden.Get("redirect_uri")); err == nil && ru.Scheme != "" {
		src := ru.Scheme + ":"
		if ru.Host != "" {
			src = ru.Scheme + "://" + ru.Host
		}
		w.Header().Set("Content-Security-Policy", contentSecurity+" "+src)
	}
	s.render(w, r, http.StatusOK, "consent", "consent_title", ws, "", p)
}

// handleConsent handles the consent form POSTed to the authorization endpoint: the request
// is checked again, and approved it becomes a single-use code bound to the client, the
// redirect URI and the code challenge.
func (s *Server) handleConsent(w http.ResponseWriter, r *http.Request) {
	ws, ok := s.checkForm(w, r)
	if !ok {
		return
	}
	if ws.UserID == "" {
		s.errorPage(w, r, http.StatusForbidden, "err_csrf")
		return
	}
	a := readAuthRequest(r.PostForm)
	_, scope, errKey, oauthErr, desc := s.checkAuthRequest(r, a)
	if errKey != "" {
		s.errorPage(w, r, http.StatusBadRequest, errKey)
		return
	} else if oauthErr != "" {
		redirectBack(w, r, a, url.Values{"error": {oauthErr}, "error_description": {desc}})
		return
	}
	if r.PostForm.Get("action") != "allow" {
		redirectBack(w, r, a, url.Values{"error": {"access_denied"}, "error_description": {"the user denied access"}})
		return
	}
	code := randomID(32)
	now := time.Now()
	g := storage.OAuthGrant{Hash: httputil.HashToken(code), Kind: "code", ClientID: a.ClientID, RedirectURI: a.RedirectURI,
		CodeChallenge: a.CodeChallenge, Scope: scope.Granted, UserID: ws.UserID, Status: storage.GrantApproved,
		ExpiresTS: now.Add(codeLifetime).UnixMilli(), Nonce: a.Nonce}
	if err := s.db.WithTx(ctx(r), func(tx *storage.Tx) error { return tx.InsertOAuthGrant(ctx(r), g, now.UnixMilli()) }); err != nil {
		s.log.Error("store authorization code", "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "err_server")
		return
	}
	redirectBack(w, r, a, url.Values{"code": {code}})
}

// pkceMatches checks a code verifier against an S256 code challenge (RFC 7636 section 4.6).
func pkceMatches(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 || strings.Trim(verifier, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") != "" {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:]) == challenge
}
