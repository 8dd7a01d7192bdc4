package config

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSampleInStep checks that config.sample.yaml is exactly what generate-config writes, so
// that the documented options and the real ones cannot drift apart.
func TestSampleInStep(t *testing.T) {
	sample, err := os.ReadFile("../../config.sample.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Generate(&buf, GenerateOptions{ServerName: "example.org", DataDir: "./lattice-data", SharedSecret: "x"}); err != nil {
		t.Fatal(err)
	}
	got := strings.Replace(buf.String(), `shared_secret: "x"`, `shared_secret: ""`, 1)
	if got != string(sample) {
		t.Fatal("config.sample.yaml is out of date: regenerate it with `lattice generate-config --server-name example.org --data-dir ./lattice-data` and blank the shared secret")
	}
}

func TestGeneratedConfigLoads(t *testing.T) {
	var buf bytes.Buffer
	if err := Generate(&buf, GenerateOptions{ServerName: "chat.example.org", DataDir: "data", RegistrationMode: "open"}); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`shared_secret: "[A-Za-z0-9_-]{40,}"`).Match(buf.Bytes()) {
		t.Fatal("generated config has no random shared secret")
	}
	path := filepath.Join(t.TempDir(), "lattice.yaml")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerName != "chat.example.org" || cfg.Registration.Mode != RegistrationOpen || cfg.Rooms.DefaultVersion != "12" {
		t.Fatalf("unexpected config: %+v", cfg)
	}
	if want := filepath.Join(filepath.Dir(path), "data", "lattice.db"); cfg.DatabaseURL() != "sqlite:"+want {
		t.Fatalf("database URL %q, want sqlite:%s", cfg.DatabaseURL(), want)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	cfg := Default()
	cfg.Database.URL = "mysql://x"
	cfg.Registration.Mode = "sometimes"
	cfg.Logging.Level = "loud"
	err := cfg.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"server_name", "database.url", "registration.mode", "logging.level"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
}

func TestUnknownFieldRejected(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("server_name: a.b\nserver_nmae: typo\n"), 0o600)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "server_nmae") {
		t.Fatalf("typo not reported: %v", err)
	}
}

func TestFederationConfig(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("x"), 0o600)
	path := filepath.Join(dir, "c.yaml")
	os.WriteFile(path, []byte("server_name: a.b\ndata_dir: .\nfederation:\n  tls_ca: ca.pem\n  key_validity: 36h\n  verify_tls: false\n"), 0o600)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Federation.KeyValidity != 36*time.Hour || cfg.Federation.VerifyTLS || cfg.FederationCAPath() != filepath.Join(dir, "ca.pem") {
		t.Fatalf("federation section: %+v", cfg.Federation)
	}
	if cert, key, generated := cfg.FederationTLSPaths(); !generated || cert != filepath.Join(dir, "federation-tls.crt") || key != filepath.Join(dir, "federation-tls.key") {
		t.Errorf("self-signed paths: %s %s %v", cert, key, generated)
	}
	if Default().Federation.KeyValidity != 24*time.Hour || !Default().Federation.VerifyTLS {
		t.Errorf("defaults: %+v", Default().Federation)
	}

	bad := Default()
	bad.ServerName, bad.DataDir = "a.b", dir
	bad.Federation = Federation{TLSCert: "missing.crt", TLSCA: "nope.pem", KeyValidity: time.Second}
	err = bad.Validate()
	for _, want := range []string{"tls_cert and federation.tls_key must be set together", "federation.tls_cert", "federation.tls_ca", "federation.key_validity"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
}

func TestVoIPAndPushConfig(t *testing.T) {
	def := Default()
	if def.VoIP.TURNUserLifetime != time.Hour || len(def.VoIP.TURNURIs) != 0 || def.Push.NotificationRetention != 30*24*time.Hour {
		t.Errorf("defaults: %+v %+v", def.VoIP, def.Push)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	os.WriteFile(path, []byte("server_name: a.b\ndata_dir: .\npush:\n  notification_retention: 48h\n"+
		"voip:\n  turn_uris: [\"turn:t.a.b:3478\"]\n  turn_shared_secret: s\n  turn_user_lifetime: 10m\n"), 0o600)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Push.NotificationRetention != 48*time.Hour || cfg.VoIP.TURNSharedSecret != "s" || cfg.VoIP.TURNUserLifetime != 10*time.Minute {
		t.Fatalf("loaded: %+v %+v", cfg.Push, cfg.VoIP)
	}

	for _, c := range []struct {
		voip VoIP
		want string // "" when valid
	}{
		{VoIP{TURNUserLifetime: time.Hour}, ""},
		{VoIP{TURNURIs: []string{"turns:t:5349"}, TURNUsername: "u", TURNPassword: "p", TURNUserLifetime: time.Hour}, ""},
		{VoIP{TURNURIs: []string{"stun:t:3478"}, TURNSharedSecret: "s", TURNUserLifetime: time.Hour}, "must start with turn: or turns:"},
		{VoIP{TURNURIs: []string{"turn:t"}, TURNSharedSecret: "s", TURNUsername: "u", TURNPassword: "p", TURNUserLifetime: time.Hour}, "not both"},
		{VoIP{TURNURIs: []string{"turn:t"}, TURNUsername: "u", TURNUserLifetime: time.Hour}, "set together"},
		{VoIP{TURNURIs: []string{"turn:t"}, TURNUserLifetime: time.Hour}, "needs turn_shared_secret"},
		{VoIP{TURNSharedSecret: "s", TURNUserLifetime: time.Hour}, "turn_uris is empty"},
		{VoIP{TURNURIs: []string{"turn:t"}, TURNSharedSecret: "s"}, "turn_user_lifetime"},
	} {
		cfg := Default()
		cfg.ServerName, cfg.VoIP = "a.b", c.voip
		err := cfg.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: error %v, want %q", c.voip, err, c.want)
		}
	}
	bad := Default()
	bad.ServerName, bad.Push.NotificationRetention = "a.b", -time.Hour
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "push.notification_retention") {
		t.Errorf("negative retention: %v", err)
	}
}

// TestValidateIPRanges: the blocked and allowed ranges of outbound connections must be CIDR
// ranges; each bad one is named.
func TestValidateIPRanges(t *testing.T) {
	cfg := Default()
	cfg.ServerName, cfg.DataDir = "example.org", t.TempDir()
	cfg.Federation.BlockedIPRanges = []string{"203.0.113.0/24", "10.0.0.0/33"}
	cfg.Federation.AllowedIPRanges = []string{"fd00::/8", "intranet"}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("bad ranges accepted")
	}
	for _, want := range []string{`federation.blocked_ip_ranges: "10.0.0.0/33"`, `federation.allowed_ip_ranges: "intranet"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	cfg.Federation.BlockedIPRanges, cfg.Federation.AllowedIPRanges = []string{"203.0.113.0/24"}, []string{"fd00::/8", "127.0.0.1/32"}
	if err := cfg.Validate(); err != nil {
		t.Errorf("good ranges refused: %v", err)
	}
}

// TestValidateCluster: database.cluster needs PostgreSQL.
func TestValidateCluster(t *testing.T) {
	cfg := Default()
	cfg.ServerName, cfg.DataDir = "example.org", t.TempDir()
	cfg.Database.Cluster = true
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "database.cluster needs PostgreSQL") {
		t.Fatalf("cluster on SQLite: %v", err)
	}
	cfg.Database.URL = "postgres://lattice@127.0.0.1/lattice"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("cluster on PostgreSQL refused: %v", err)
	}
}
