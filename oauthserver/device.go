package oauthserver

import (
	"crypto/rand"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// The device authorization grant (RFC 8628; Client-Server API, "Device authorisation
// flow"): the device asks for a code, the user approves it on the web page
// /_lattice/account/device, and the device polls the token endpoint meanwhile.

// userCodeAlphabet has no vowels (no words) and no look-alikes (0/O, 1/I); RFC 8628
// section 6.1's example.
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

func newUserCode() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	out := make([]byte, 0, 9)
	for i, c := range b {
		if i == 4 {
			out = append(out, '-')
		}
		out = append(out, userCodeAlphabet[int(c)%len(userCodeAlphabet)])
	}
	return string(out)
}

// normalUserCode is what the user typed, in the stored form: upper case, dashes and spaces
// ignored.
func normalUserCode(s string) string {
	s = strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(s))
	if len(s) != 8 {
		return s
	}
	return s[:4] + "-" + s[4:]
}

// handleDeviceAuthorization handles POST to the device authorization endpoint.
func (s *Server) handleDeviceAuthorization(w http.ResponseWriter, r *http.Request) {
	if !readTokenForm(w, r) {
		return
	}
	if ok, wait := s.clients.Allow(httputil.RemoteIP(r)); !ok {
		tooMany(w, wait, "too many requests from this address")
		return
	}
	c := s.loadClient(r, r.PostForm.Get("client_id"))
	if c == nil {
		oauthJSON(w, http.StatusUnauthorized, "invalid_client", "unknown client_id")
		return
	}
	if !containsGrant(c, grantDeviceCode) {
		oauthJSON(w, http.StatusBadRequest, "unauthorized_client", "the client did not register the device code grant")
		return
	}
	scope, err := parseScope(r.PostForm.Get("scope"))
	if err != nil {
		oauthJSON(w, http.StatusBadRequest, "invalid_scope", err.Error())
		return
	}
	deviceCode := randomID(32)
	now := time.Now()
	g := storage.OAuthGrant{Hash: httputil.HashToken(deviceCode), Kind: "device", ClientID: c.ID, Scope: scope.Granted,
		Status: storage.GrantPending, ExpiresTS: now.Add(deviceLifetime).UnixMilli(), IntervalMS: devicePollDefault.Milliseconds()}
	for range 5 { // a user code already taken (unlikely: 20^8) is drawn again
		g.UserCode = newUserCode()
		err = s.db.WithTx(ctx(r), func(tx *storage.Tx) error { return tx.InsertOAuthGrant(ctx(r), g, now.UnixMilli()) })
		if !errors.Is(err, storage.ErrConflict) {
			break
		}
	}
	if err != nil {
		s.serverError(w, err)
		return
	}
	verify := s.baseURL(r) + pathLink
	w.Header().Set("Cache-Control", "no-store")
	httputil.WriteJSON(w, http.StatusOK, map[string]any{
		"device_code": deviceCode, "user_code": g.UserCode,
		"verification_uri": verify, "verification_uri_complete": verify + "?user_code=" + url.QueryEscape(g.UserCode),
		"expires_in": int64(deviceLifetime.Seconds()), "interval": int64(devicePollDefault.Seconds()),
	})
}

// pollDeviceCode answers the device code grant (RFC 8628 section 3.5): authorization_pending,
// slow_down (polled faster than the interval, which grows by 5 seconds), expired_token,
// access_denied, or the tokens once approved.
func (s *Server) pollDeviceCode(w http.ResponseWriter, r *http.Request, c *client) {
	dc := r.PostForm.Get("device_code")
	if dc == "" {
		oauthJSON(w, http.StatusBadRequest, "invalid_request", "device_code is required")
		return
	}
	hash := httputil.HashToken(dc)
	now := time.Now().UnixMilli()
	var g *storage.OAuthGrant
	answer := ""
	err := s.db.WithTx(ctx(r), func(tx *storage.Tx) error {
		var err error
		g, err = tx.PollOAuthGrant(ctx(r), hash, now)
		if err != nil {
			return err
		}
		switch {
		case g.ClientID != c.ID:
			answer = "invalid_grant"
		case now >= g.ExpiresTS:
			answer = "expired_token" // kept a while (storage.InsertOAuthGrant) to say so
		case g.Status == storage.GrantDenied:
			answer = "access_denied"
			_, err = tx.TakeOAuthGrant(ctx(r), "device", hash)
		case g.Status == storage.GrantApproved:
			_, err = tx.TakeOAuthGrant(ctx(r), "device", hash)
		case g.LastPollTS > 0 && now-g.LastPollTS < g.IntervalMS:
			answer = "slow_down"
			err = tx.SlowOAuthGrant(ctx(r), hash, g.IntervalMS+5000)
		default:
			answer = "authorization_pending"
		}
		return err
	})
	if errors.Is(err, storage.ErrNotFound) {
		oauthJSON(w, http.StatusBadRequest, "invalid_grant", "unknown device_code")
		return
	} else if err != nil {
		s.serverError(w, err)
		return
	}
	if answer != "" {
		oauthJSON(w, http.StatusBadRequest, answer, map[string]string{
			"invalid_grant": "the device code was issued to another client", "expired_token": "the device code expired",
			"access_denied": "the user denied access", "slow_down": "poll less often",
			"authorization_pending": "the user has not answered yet",
		}[answer])
		return
	}
	s.issue(w, r, c, g, "")
}

// handleLinkPage handles GET /_lattice/account/device: the signed-in user types the code
// (or arrives with it from verification_uri_complete) and sees the consent page.
func (s *Server) handleLinkPage(w http.ResponseWriter, r *http.Request) {
	ws := s.requireUser(w, r)
	if ws == nil {
		return
	}
	code := r.URL.Query().Get("user_code")
	if code == "" {
		s.render(w, r, http.StatusOK, "device", "device_title", ws, "", map[string]string{"UserCode": ""})
		return
	}
	if !s.allowCodeLookup(w, r, ws, code) {
		return
	}
	g, c := s.pendingDeviceGrant(r, code)
	if g == nil {
		s.render(w, r, http.StatusNotFound, "device", "device_title", ws, "err_unknown_code", map[string]string{"UserCode": code})
		return
	}
	scope, _ := parseScope(g.Scope)
	s.renderConsent(w, r, ws, c, scope.DeviceID, pathLink, url.Values{"user_code": {g.UserCode}}, r.URL.RequestURI())
}

// allowCodeLookup limits how fast a user tries user codes (RFC 8628 section 5.1: brute
// forcing the short code), by account and by address; false when it answered 429.
func (s *Server) allowCodeLookup(w http.ResponseWriter, r *http.Request, ws *webSession, code string) bool {
	okUser, _ := s.codeLookups.Allow("u:" + ws.UserID)
	okAddr, _ := s.codeLookups.Allow("a:" + httputil.RemoteIP(r))
	if okUser && okAddr {
		return true
	}
	s.render(w, r, http.StatusTooManyRequests, "device", "device_title", ws, "err_rate_limited", map[string]string{"UserCode": code})
	return false
}

// pendingDeviceGrant returns the pending, unexpired device grant with the user code, and
// its client; nil when there is none.
func (s *Server) pendingDeviceGrant(r *http.Request, code string) (*storage.OAuthGrant, *client) {
	g, err := s.db.OAuthGrantByUserCode(r.Context(), normalUserCode(code))
	if err != nil || g.Status != storage.GrantPending || time.Now().UnixMilli() >= g.ExpiresTS {
		return nil, nil
	}
	c := s.loadClient(r, g.ClientID)
	if c == nil {
		return nil, nil
	}
	return g, c
}

// handleLinkForm handles the consent form of a device grant.
func (s *Server) handleLinkForm(w http.ResponseWriter, r *http.Request) {
	ws, ok := s.checkForm(w, r)
	if !ok {
		return
	}
	if ws.UserID == "" {
		s.errorPage(w, r, http.StatusForbidden, "err_csrf")
		return
	}
	code := normalUserCode(r.PostForm.Get("user_code"))
	if !s.allowCodeLookup(w, r, ws, code) {
		return
	}
	status, msg := storage.GrantDenied, "device_denied"
	if r.PostForm.Get("action") == "allow" {
		status, msg = storage.GrantApproved, "device_approved"
	}
	err := s.db.WithTx(ctx(r), func(tx *storage.Tx) error {
		return tx.DecideDeviceGrant(ctx(r), code, ws.UserID, status, time.Now().UnixMilli())
	})
	if errors.Is(err, storage.ErrNotFound) {
		s.render(w, r, http.StatusNotFound, "device", "device_title", ws, "err_unknown_code", map[string]string{"UserCode": code})
		return
	} else if err != nil {
		s.log.Error("decide device grant", "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "err_server")
		return
	}
	_, msgs := messagesFor(r)
	s.render(w, r, http.StatusOK, "done", "done_title", ws, "", map[string]string{"Message": msgs[msg]})
}
