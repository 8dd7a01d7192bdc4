package clientapi

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"strconv"
	"time"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/httputil"
)

// turnServerResponse is the answer of GET /voip/turnServer (client-server API, "Voice over
// IP"). TTL is in seconds.
type turnServerResponse struct {
	Username string   `json:"username"`
	Password string   `json:"password"`
	URIs     []string `json:"uris"`
	TTL      int64    `json:"ttl"`
}

// handleTurnServer handles GET /voip/turnServer: the TURN server of the voip configuration
// section with credentials for the caller. Without one configured the answer is {}, as
// Synapse answers; clients then make calls without relaying.
func (s *Server) handleTurnServer(r *http.Request) (any, error) {
	dev := httputil.Device(r.Context())
	if resp, ok := turnCredentials(s.cfg.VoIP, dev.UserID, time.Now()); ok {
		return resp, nil
	}
	return map[string]any{}, nil
}

// turnCredentials returns the TURN credentials for userID at now, or false when no TURN
// server is configured. With a shared secret they follow the TURN REST API convention that
// coturn's use-auth-secret checks: the username is "<expiry in Unix seconds>:<user ID>" and
// the password base64(HMAC-SHA1(secret, username)), so the TURN server can verify them
// without asking us and refuses them after the expiry. Otherwise they are the fixed ones.
func turnCredentials(v config.VoIP, userID string, now time.Time) (turnServerResponse, bool) {
	if len(v.TURNURIs) == 0 {
		return turnServerResponse{}, false
	}
	ttl := int64(v.TURNUserLifetime / time.Second)
	if v.TURNSharedSecret == "" {
		return turnServerResponse{Username: v.TURNUsername, Password: v.TURNPassword, URIs: v.TURNURIs, TTL: ttl}, true
	}
	username := strconv.FormatInt(now.Unix()+ttl, 10) + ":" + userID
	mac := hmac.New(sha1.New, []byte(v.TURNSharedSecret))
	mac.Write([]byte(username))
	password := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	return turnServerResponse{Username: username, Password: password, URIs: v.TURNURIs, TTL: ttl}, true
}
