package clientapi_test

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/internal/config"
)

const turnServerPath = "/_matrix/client/v3/voip/turnServer"

func TestTurnServerNotConfigured(t *testing.T) {
	s := newStack(t)
	if got := s.do(t, "GET", turnServerPath, ""); len(got) != 0 {
		t.Fatalf("without TURN: %v, want {}", got)
	}
	s.token = ""
	if rec := s.request("GET", turnServerPath, ""); rec.Code != 401 {
		t.Fatalf("without a token: %d %s", rec.Code, rec.Body)
	}
}

func TestTurnServerSharedSecret(t *testing.T) {
	uris := []string{"turn:turn.localhost:3478?transport=udp", "turns:turn.localhost:5349?transport=tcp"}
	s := newStack(t, func(c *config.Config) {
		c.VoIP = config.VoIP{TURNURIs: uris, TURNSharedSecret: "coturn secret", TURNUserLifetime: 2 * time.Hour}
	})
	before := time.Now().Unix()
	got := s.do(t, "GET", turnServerPath, "")
	after := time.Now().Unix()

	if d := cmp.Diff(map[string]any{"uris": []any{uris[0], uris[1]}, "ttl": float64(7200)},
		map[string]any{"uris": got["uris"], "ttl": got["ttl"]}); d != "" {
		t.Errorf("uris and ttl (-want +got):\n%s", d)
	}
	username, _ := got["username"].(string)
	expiry, user, ok := strings.Cut(username, ":")
	if !ok || user != "@fuzzer:localhost" {
		t.Fatalf("username %q, want <expiry>:@fuzzer:localhost", username)
	}
	exp, err := strconv.ParseInt(expiry, 10, 64)
	if err != nil || exp < before+7200 || exp > after+7200 {
		t.Fatalf("expiry %q, want between %d and %d", expiry, before+7200, after+7200)
	}
	// What coturn computes with static-auth-secret to check the password.
	mac := hmac.New(sha1.New, []byte("coturn secret"))
	mac.Write([]byte(username))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); got["password"] != want {
		t.Fatalf("password %v, want %s", got["password"], want)
	}
}

func TestTurnServerStaticCredentials(t *testing.T) {
	s := newStack(t, func(c *config.Config) {
		c.VoIP = config.VoIP{TURNURIs: []string{"turn:turn.localhost"}, TURNUsername: "calls", TURNPassword: "pw", TURNUserLifetime: time.Hour}
	})
	got := s.do(t, "GET", turnServerPath, "")
	want := map[string]any{"username": "calls", "password": "pw", "uris": []any{"turn:turn.localhost"}, "ttl": float64(3600)}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("static credentials (-want +got):\n%s", d)
	}
}
