package e2e

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"os"
	"regexp"
	"testing"
)

// RegisterAdmin creates a server admin through shared-secret registration (the way Synapse's
// register_new_matrix_user does) and returns a client logged in as it.
func (s *Server) RegisterAdmin(t testing.TB, localpart string) *Client {
	t.Helper()
	cfg, err := os.ReadFile(s.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	secret := regexp.MustCompile(`(?m)^  shared_secret: "([^"]+)"`).FindSubmatch(cfg)
	if secret == nil {
		t.Fatal("no registration shared secret in the generated config")
	}
	const password = "admin password 123"
	nonce := str(s.Do(t, "", "GET", "/_synapse/admin/v1/register", nil).Body, "nonce")
	mac := hmac.New(sha1.New, secret[1])
	mac.Write([]byte(nonce + "\x00" + localpart + "\x00" + password + "\x00admin"))
	r := s.Do(t, "", "POST", "/_synapse/admin/v1/register", map[string]any{
		"nonce": nonce, "username": localpart, "password": password, "admin": true,
		"mac": hex.EncodeToString(mac.Sum(nil)),
	})
	if r.Status != 200 {
		t.Fatalf("registering admin %s: %d %s", localpart, r.Status, r.Raw)
	}
	return &Client{t: t, srv: s, UserID: str(r.Body, "user_id"), DeviceID: str(r.Body, "device_id"), Token: str(r.Body, "access_token")}
}
