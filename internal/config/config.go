// Package config holds Lattice's configuration: the YAML file format, its defaults, validation
// and the generator behind `lattice generate-config`. It imports no other Lattice package.
package config

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Registration modes.
const (
	RegistrationDisabled = "disabled"
	RegistrationOpen     = "open"
	RegistrationToken    = "token"
)

// Config is the whole configuration file.
type Config struct {
	ServerName     string        `yaml:"server_name"`
	DataDir        string        `yaml:"data_dir"`
	SigningKeyPath string        `yaml:"signing_key_path"`
	Database       Database      `yaml:"database"`
	ClientAPI      Listener      `yaml:"client_api"`
	FederationAPI  Listener      `yaml:"federation_api"`
	Federation     Federation    `yaml:"federation"`
	Registration   Registration  `yaml:"registration"`
	Limits         Limits        `yaml:"limits"`
	Rooms          Rooms         `yaml:"rooms"`
	Media          Media         `yaml:"media"`
	ServerNotices  ServerNotices `yaml:"server_notices"`
	UserDirectory  UserDirectory `yaml:"user_directory"`
	Push           Push          `yaml:"push"`
	Retention      Retention     `yaml:"retention"`
	VoIP           VoIP          `yaml:"voip"`
	RTC            RTC           `yaml:"rtc"`
	DelayedEvents  DelayedEvents `yaml:"delayed_events"`
	SSO            SSO           `yaml:"sso"`
	Email          Email         `yaml:"email"`
	OAuth          OAuth         `yaml:"oauth"`
	Runtime        Runtime       `yaml:"runtime"`
	Logging        Logging       `yaml:"logging"`
	Metrics        Metrics       `yaml:"metrics"`
	// AppServiceConfigFiles are the registration files of application services (bridges and
	// bots), in the spec's YAML format; relative paths are below data_dir.
	AppServiceConfigFiles []string `yaml:"app_service_config_files"`

	// AppServices are the registrations read from AppServiceConfigFiles by Load.
	AppServices []AppService `yaml:"-"`
}

// Metrics configures the Prometheus metrics listener.
type Metrics struct {
	// Listen is the address of the listener serving /metrics (and /health); empty turns it
	// off. Keep it on loopback or a private network: it is not authenticated.
	Listen string `yaml:"listen"`
}

// UserDirectory controls whom /user_directory/search finds.
type UserDirectory struct {
	// SearchAllUsers finds every local user; otherwise only those who share a room with the
	// searcher or are in a public room.
	SearchAllUsers bool `yaml:"search_all_users"`
}

// Push configures notifications (push rules' results, GET /notifications, push gateways).
type Push struct {
	// NotificationRetention is how long read notifications are kept for GET /notifications
	// before a background job deletes them; unread ones are kept until read. 0 keeps all.
	NotificationRetention time.Duration `yaml:"notification_retention"`
	// GatewayAllowedIPRanges are IP ranges (CIDR) that push gateways may be at although the
	// built-in list or federation.blocked_ip_ranges refuse them (a gateway on your own
	// network). Pusher URLs are chosen by users, so they get the same policy as federation.
	GatewayAllowedIPRanges []string `yaml:"gateway_allowed_ip_ranges"`
}

// VoIP configures the TURN server that GET /_matrix/client/v3/voip/turnServer hands to
// clients for relaying calls. Without TURNURIs the endpoint answers {} (no TURN server).
type VoIP struct {
	// TURNURIs are the TURN server's URIs ("turn:" or "turns:").
	TURNURIs []string `yaml:"turn_uris"`
	// TURNSharedSecret is the secret shared with the TURN server for time-limited
	// credentials (the TURN REST API convention, coturn's use-auth-secret).
	TURNSharedSecret string `yaml:"turn_shared_secret"`
	// TURNUsername and TURNPassword are fixed credentials, the alternative to the secret.
	TURNUsername string `yaml:"turn_username"`
	TURNPassword string `yaml:"turn_password"`
	// TURNUserLifetime is how long credentials made with the shared secret stay valid.
	TURNUserLifetime time.Duration `yaml:"turn_user_lifetime"`
}

// Database selects the storage backend.
type Database struct {
	// URL is "sqlite:PATH" (relative paths are below data_dir) or a "postgres://" URL.
	URL          string `yaml:"url"`
	MaxOpenConns int    `yaml:"max_open_conns"`
	// Cluster lets several processes serve one PostgreSQL database (package cluster): their
	// /sync long-polls are woken by each other's writes and each room's input is serialised
	// across them. Off, the server refuses to start while another one serves the database.
	Cluster bool `yaml:"cluster"`
}

// Listener is one HTTP listener.
type Listener struct {
	Listen        string `yaml:"listen"`
	PublicBaseURL string `yaml:"public_base_url"`
}

// Federation configures the Server-Server API: the TLS certificate of the federation
// listener, how outbound connections check other servers' certificates, and the validity of
// the key responses this server publishes.
type Federation struct {
	// TLSCert and TLSKey are PEM files (relative to data_dir) for the federation listener.
	// When both are empty a self-signed certificate for server_name is created under data_dir
	// on first start and reused.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// VerifyTLS checks other servers' certificates on outbound connections. Turning it off
	// lets anyone on the path impersonate other servers; it is for tests only.
	VerifyTLS bool `yaml:"verify_tls"`
	// TLSCA is a PEM file (relative to data_dir) of extra certificate authorities trusted for
	// outbound connections, besides the system's.
	TLSCA string `yaml:"tls_ca"`
	// KeyValidity is how long the key responses of /_matrix/key/v2/server stay valid.
	KeyValidity time.Duration `yaml:"key_validity"`
	// BlockedIPRanges are IP ranges (CIDR) that outbound connections whose destination others
	// choose (federation requests, remote media, URL previews) never reach, in addition to
	// the built-in list of loopback, private, link-local and other non-public ranges.
	BlockedIPRanges []string `yaml:"blocked_ip_ranges"`
	// AllowedIPRanges are IP ranges (CIDR) that federation and remote media may reach even
	// though a blocked range holds them: another homeserver on the local network.
	AllowedIPRanges []string `yaml:"allowed_ip_ranges"`
	// PartialStateJoins joins rooms on other servers with partial state (send_join with
	// omit_members, MSC3706): the room is usable as soon as the join returns, and its
	// members are fetched in the background. Off (the default while it is a preview), a
	// join waits for the full state.
	PartialStateJoins bool `yaml:"partial_state_joins"`
}

// Registration controls who may create accounts.
type Registration struct {
	Mode              string   `yaml:"mode"`
	Tokens            []string `yaml:"tokens"`
	SharedSecret      string   `yaml:"shared_secret"`
	MinPasswordLength int      `yaml:"min_password_length"`
}

// Limits bounds what clients may send.
type Limits struct {
	MaxRequestBytes  int64 `yaml:"max_request_bytes"`
	MaxSyncTimeoutMS int   `yaml:"max_sync_timeout_ms"`
	// FailedLoginsPerMinute and FailedLoginsBurst limit wrong passwords per account.
	FailedLoginsPerMinute float64 `yaml:"failed_logins_per_minute"`
	FailedLoginsBurst     float64 `yaml:"failed_logins_burst"`
	// RegistrationsPerMinute and RegistrationsBurst limit /register per client address.
	RegistrationsPerMinute float64 `yaml:"registrations_per_minute"`
	RegistrationsBurst     float64 `yaml:"registrations_burst"`
	// MessagesPerSecond and MessagesBurst limit the messages each user sends; 0 and 0: no limit.
	MessagesPerSecond float64 `yaml:"messages_per_second"`
	MessagesBurst     float64 `yaml:"messages_burst"`
	// RequestBodyTimeout and MinBodyBytesPerSecond bound the time to send a request body:
	// the timeout plus the body's size at the minimum rate.
	RequestBodyTimeout    time.Duration `yaml:"request_body_timeout"`
	MinBodyBytesPerSecond int64         `yaml:"min_body_bytes_per_second"`
	// MaxPendingConnectionsPerAddress caps the client connections of one address that are
	// still sending their request; 0 means no cap.
	MaxPendingConnectionsPerAddress int `yaml:"max_pending_connections_per_address"`
}

// Rooms holds room defaults.
type Rooms struct {
	DefaultVersion string `yaml:"default_version"`
}

// Media configures the media repository (uploads, downloads, thumbnails, URL previews).
type Media struct {
	// Path is the directory holding uploaded files; relative paths are below data_dir.
	Path string `yaml:"path"`
	// MaxUploadBytes is the largest upload accepted; larger ones get 413 M_TOO_LARGE.
	MaxUploadBytes int64 `yaml:"max_upload_bytes"`
	// MaxImagePixels is the largest image (width times height) Lattice decodes to make a
	// thumbnail, which guards against decompression bombs.
	MaxImagePixels int64      `yaml:"max_image_pixels"`
	URLPreview     URLPreview `yaml:"url_preview"`
	// UnauthenticatedMediaFreeze is when the deprecated unauthenticated download and
	// thumbnail endpoints were frozen (RFC 3339): media uploaded (or cached from another
	// server) before it is still served there, later media only by the authenticated
	// endpoints. Empty: frozen from the start, nothing is served without a token.
	UnauthenticatedMediaFreeze string `yaml:"unauthenticated_media_freeze"`
}

// Freeze returns the time of the unauthenticated media freeze (see
// UnauthenticatedMediaFreeze); the zero time when frozen from the start. It assumes
// Validate passed.
func (m Media) Freeze() time.Time {
	t, _ := time.Parse(time.RFC3339, m.UnauthenticatedMediaFreeze)
	return t
}

// URLPreview configures GET /_matrix/client/v1/media/preview_url, which makes the server
// fetch URLs that clients name.
type URLPreview struct {
	Enabled bool `yaml:"enabled"`
	// AllowPrivate lets previews fetch loopback, private, link-local and other non-public
	// addresses. Leave it off: otherwise any user can probe the server's own network.
	AllowPrivate bool  `yaml:"allow_private"`
	MaxBytes     int64 `yaml:"max_bytes"`
	TimeoutMS    int   `yaml:"timeout_ms"`
}

// Runtime tunes the Go runtime.
type Runtime struct {
	// GCPercent is the garbage collector's target (Go's GOGC); the GOGC environment variable,
	// when set, wins. Higher values trade memory for CPU.
	GCPercent int `yaml:"gc_percent"`
	// MemoryLimitMB is a soft limit on the Go heap in MiB (Go's GOMEMLIMIT); 0 for none.
	MemoryLimitMB int `yaml:"memory_limit_mb"`
}

// Logging configures log/slog.
type Logging struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
	// AccessLog logs one line per HTTP request at info level: method, route template,
	// status, duration and the authenticated user.
	AccessLog bool `yaml:"access_log"`
}

// Default returns the configuration used for any option the file leaves out.
func Default() Config {
	return Config{
		DataDir:      "./lattice-data",
		Database:     Database{URL: "sqlite:lattice.db", MaxOpenConns: 16},
		ClientAPI:    Listener{Listen: "127.0.0.1:8008"},
		Registration: Registration{Mode: RegistrationDisabled, MinPasswordLength: 8},
		Federation:   Federation{VerifyTLS: true, KeyValidity: 24 * time.Hour},
		Limits: Limits{MaxRequestBytes: 1 << 20, MaxSyncTimeoutMS: 60000,
			FailedLoginsPerMinute: 5, FailedLoginsBurst: 5, RegistrationsPerMinute: 60, RegistrationsBurst: 100,
			RequestBodyTimeout: 30 * time.Second, MinBodyBytesPerSecond: 4096, MaxPendingConnectionsPerAddress: 128},
		Rooms:         Rooms{DefaultVersion: "12"},
		Push:          Push{NotificationRetention: 30 * 24 * time.Hour},
		VoIP:          VoIP{TURNUserLifetime: time.Hour},
		DelayedEvents: DelayedEvents{MaxDelay: 24 * time.Hour, MaxPerUser: 100},
		SSO:           SSO{LoginTokenLifetime: 2 * time.Minute, RedirectTokenLifetime: 5 * time.Second, GetLoginToken: true},
		Email:         defaultEmail(),
		OAuth:         OAuth{Enabled: true, AccessTokenLifetime: 5 * time.Minute},
		Media: Media{
			Path: "media", MaxUploadBytes: 50 << 20, MaxImagePixels: 32_000_000,
			URLPreview: URLPreview{MaxBytes: 10 << 20, TimeoutMS: 10000},
		},
		Runtime: Runtime{GCPercent: 300},
		Logging: Logging{Level: "info", Format: "text", AccessLog: true},

		ServerNotices: ServerNotices{SystemMXIDDisplayName: "Server Notices", RoomName: "Server Notices"},
	}
}

// noticesLocalpart is the grammar of the localparts this server creates.
var noticesLocalpart = regexp.MustCompile(`^[a-z0-9._=\-/+]+$`)

// ServerNotices configures the server notices that admins send to users (Synapse's
// server_notices section). An empty SystemMXIDLocalpart turns them off.
type ServerNotices struct {
	SystemMXIDLocalpart   string `yaml:"system_mxid_localpart"`
	SystemMXIDDisplayName string `yaml:"system_mxid_display_name"`
	SystemMXIDAvatarURL   string `yaml:"system_mxid_avatar_url"`
	RoomName              string `yaml:"room_name"`
}

// Load reads a YAML file on top of Default and validates it.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg := Default()
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !filepath.IsAbs(cfg.DataDir) {
		cfg.DataDir = filepath.Join(filepath.Dir(path), cfg.DataDir)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if cfg.AppServices, err = cfg.LoadAppServices(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &cfg, nil
}

// Validate reports every problem with the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if c.ServerName == "" {
		errs = append(errs, errors.New("server_name is required"))
	} else if strings.ContainsAny(c.ServerName, "/ @!#$") {
		errs = append(errs, fmt.Errorf("server_name %q is not a valid Matrix server name", c.ServerName))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir is required"))
	}
	if !strings.HasPrefix(c.Database.URL, "sqlite:") && !strings.HasPrefix(c.Database.URL, "postgres://") && !strings.HasPrefix(c.Database.URL, "postgresql://") {
		errs = append(errs, fmt.Errorf("database.url %q must start with sqlite: or postgres://", c.Database.URL))
	}
	if c.Database.Cluster && strings.HasPrefix(c.Database.URL, "sqlite:") {
		errs = append(errs, errors.New("database.cluster needs PostgreSQL: SQLite serves one process"))
	}
	if c.Database.MaxOpenConns < 1 {
		errs = append(errs, errors.New("database.max_open_conns must be at least 1"))
	}
	if _, _, err := net.SplitHostPort(c.ClientAPI.Listen); err != nil {
		errs = append(errs, fmt.Errorf("client_api.listen: %w", err))
	}
	if c.FederationAPI.Listen != "" {
		if _, _, err := net.SplitHostPort(c.FederationAPI.Listen); err != nil {
			errs = append(errs, fmt.Errorf("federation_api.listen: %w", err))
		}
	}
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			errs = append(errs, fmt.Errorf("metrics.listen: %w", err))
		}
	}
	errs = append(errs, c.validateFederation()...)
	switch c.Registration.Mode {
	case RegistrationDisabled, RegistrationOpen, RegistrationToken:
		// In token mode, registration.tokens may be empty: admins create tokens with the
		// admin API.
	default:
		errs = append(errs, fmt.Errorf("registration.mode %q must be open, token or disabled", c.Registration.Mode))
	}
	if l := c.ServerNotices.SystemMXIDLocalpart; l != "" && !noticesLocalpart.MatchString(l) {
		errs = append(errs, fmt.Errorf("server_notices.system_mxid_localpart %q may contain only a-z, 0-9, . _ = - / +", l))
	}
	if c.Limits.MaxRequestBytes < 1024 {
		errs = append(errs, errors.New("limits.max_request_bytes must be at least 1024"))
	}
	if c.Limits.MessagesPerSecond < 0 || c.Limits.MessagesBurst < 0 {
		errs = append(errs, errors.New("limits.messages_per_second and limits.messages_burst must not be negative"))
	}
	if c.Limits.FailedLoginsPerMinute <= 0 || c.Limits.FailedLoginsBurst < 1 || c.Limits.RegistrationsPerMinute <= 0 || c.Limits.RegistrationsBurst < 1 {
		errs = append(errs, errors.New("limits: the *_per_minute rates must be positive and the bursts at least 1"))
	}
	if c.Limits.RequestBodyTimeout < time.Second || c.Limits.MinBodyBytesPerSecond < 0 || c.Limits.MaxPendingConnectionsPerAddress < 0 {
		errs = append(errs, errors.New("limits: request_body_timeout must be at least 1s, min_body_bytes_per_second and max_pending_connections_per_address not negative"))
	}
	if c.Limits.MaxSyncTimeoutMS < 0 {
		errs = append(errs, errors.New("limits.max_sync_timeout_ms must not be negative"))
	}
	errs = append(errs, c.Media.validate()...)
	errs = append(errs, c.VoIP.validate()...)
	errs = append(errs, c.RTC.validate()...)
	errs = append(errs, c.DelayedEvents.validate()...)
	errs = append(errs, c.validateSSO()...)
	errs = append(errs, c.validateEmail()...)
	errs = append(errs, c.OAuth.validate()...)
	errs = append(errs, c.Retention.validate()...)
	if c.Push.NotificationRetention < 0 {
		errs = append(errs, errors.New("push.notification_retention must not be negative (0 keeps every notification)"))
	}
	if c.Runtime.GCPercent < 10 && c.Runtime.GCPercent != -1 {
		errs = append(errs, errors.New("runtime.gc_percent must be at least 10 (or -1 to turn the collector off)"))
	}
	if c.Runtime.MemoryLimitMB < 0 {
		errs = append(errs, errors.New("runtime.memory_limit_mb must not be negative"))
	}
	switch c.Logging.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("logging.level %q must be debug, info, warn or error", c.Logging.Level))
	}
	switch c.Logging.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("logging.format %q must be text or json", c.Logging.Format))
	}
	return errors.Join(errs...)
}

// DatabaseURL returns the database URL with a relative SQLite path resolved below data_dir.
func (c *Config) DatabaseURL() string {
	if path, ok := strings.CutPrefix(c.Database.URL, "sqlite:"); ok && !filepath.IsAbs(path) {
		return "sqlite:" + filepath.Join(c.DataDir, path)
	}
	return c.Database.URL
}

func (m *Media) validate() []error {
	var errs []error
	if m.Path == "" {
		errs = append(errs, errors.New("media.path is required"))
	}
	if m.MaxUploadBytes < 1 {
		errs = append(errs, errors.New("media.max_upload_bytes must be at least 1"))
	}
	if m.MaxImagePixels < 1 {
		errs = append(errs, errors.New("media.max_image_pixels must be at least 1"))
	}
	if m.URLPreview.MaxBytes < 1024 {
		errs = append(errs, errors.New("media.url_preview.max_bytes must be at least 1024"))
	}
	if m.URLPreview.TimeoutMS < 1 {
		errs = append(errs, errors.New("media.url_preview.timeout_ms must be at least 1"))
	}
	if m.UnauthenticatedMediaFreeze != "" {
		if _, err := time.Parse(time.RFC3339, m.UnauthenticatedMediaFreeze); err != nil {
			errs = append(errs, fmt.Errorf("media.unauthenticated_media_freeze %q must be empty or an RFC 3339 time such as 2024-09-01T00:00:00Z", m.UnauthenticatedMediaFreeze))
		}
	}
	return errs
}

func (v *VoIP) validate() []error {
	var errs []error
	for _, uri := range v.TURNURIs {
		if !strings.HasPrefix(uri, "turn:") && !strings.HasPrefix(uri, "turns:") {
			errs = append(errs, fmt.Errorf("voip.turn_uris: %q must start with turn: or turns:", uri))
		}
	}
	static := v.TURNUsername != "" || v.TURNPassword != ""
	switch {
	case v.TURNSharedSecret != "" && static:
		errs = append(errs, errors.New("voip: set turn_shared_secret or turn_username and turn_password, not both"))
	case static && (v.TURNUsername == "" || v.TURNPassword == ""):
		errs = append(errs, errors.New("voip.turn_username and voip.turn_password must be set together"))
	case len(v.TURNURIs) > 0 && v.TURNSharedSecret == "" && !static:
		errs = append(errs, errors.New("voip.turn_uris needs turn_shared_secret or turn_username and turn_password"))
	case len(v.TURNURIs) == 0 && (v.TURNSharedSecret != "" || static):
		errs = append(errs, errors.New("voip: TURN credentials are set but voip.turn_uris is empty"))
	}
	if v.TURNUserLifetime < time.Minute {
		errs = append(errs, errors.New("voip.turn_user_lifetime must be at least 1m"))
	}
	return errs
}

// Key validity bounds: receivers use at most 7 days of a key response's validity anyway
// (room versions 5 and later), and a response must stay valid long enough to be cached.
const (
	minKeyValidity = time.Minute
	maxKeyValidity = 7 * 24 * time.Hour
)

func (c *Config) validateFederation() []error {
	var errs []error
	f := c.Federation
	if (f.TLSCert == "") != (f.TLSKey == "") {
		errs = append(errs, errors.New("federation.tls_cert and federation.tls_key must be set together (or both left empty for a self-signed certificate)"))
	}
	for _, p := range []struct{ name, path string }{
		{"federation.tls_cert", f.TLSCert}, {"federation.tls_key", f.TLSKey}, {"federation.tls_ca", f.TLSCA},
	} {
		if p.path == "" || c.DataDir == "" {
			continue
		}
		if st, err := os.Stat(c.dataPath(p.path)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
		} else if st.IsDir() {
			errs = append(errs, fmt.Errorf("%s: %s is a directory", p.name, c.dataPath(p.path)))
		}
	}
	for _, r := range []struct {
		name   string
		ranges []string
	}{{"federation.blocked_ip_ranges", f.BlockedIPRanges}, {"federation.allowed_ip_ranges", f.AllowedIPRanges},
		{"push.gateway_allowed_ip_ranges", c.Push.GatewayAllowedIPRanges}} {
		for _, cidr := range r.ranges {
			if _, err := netip.ParsePrefix(cidr); err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a CIDR range such as 10.0.0.0/8 or fd00::/8", r.name, cidr))
			}
		}
	}
	if f.KeyValidity < minKeyValidity || f.KeyValidity > maxKeyValidity {
		errs = append(errs, fmt.Errorf("federation.key_validity %s must be between %s and %s", f.KeyValidity, minKeyValidity, maxKeyValidity))
	}
	return errs
}

// dataPath resolves a path relative to data_dir.
func (c *Config) dataPath(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.DataDir, p)
}

// FederationTLSPaths returns the certificate and key files of the federation listener, with
// relative paths resolved below data_dir; generated reports whether they are the self-signed
// pair Lattice creates on first start (tls_cert and tls_key empty).
func (c *Config) FederationTLSPaths() (cert, key string, generated bool) {
	if c.Federation.TLSCert == "" && c.Federation.TLSKey == "" {
		return filepath.Join(c.DataDir, "federation-tls.crt"), filepath.Join(c.DataDir, "federation-tls.key"), true
	}
	return c.dataPath(c.Federation.TLSCert), c.dataPath(c.Federation.TLSKey), false
}

// FederationCAPath returns the extra CA file for outbound federation resolved below
// data_dir, or "" when none is configured.
func (c *Config) FederationCAPath() string {
	return c.dataPath(c.Federation.TLSCA)
}

// MediaPath returns the media directory with a relative path resolved below data_dir.
func (c *Config) MediaPath() string {
	if filepath.IsAbs(c.Media.Path) {
		return c.Media.Path
	}
	return filepath.Join(c.DataDir, c.Media.Path)
}

// KeyPath returns where the ed25519 signing key lives.
func (c *Config) KeyPath() string {
	if c.SigningKeyPath == "" {
		return filepath.Join(c.DataDir, "signing.key")
	}
	if filepath.IsAbs(c.SigningKeyPath) {
		return c.SigningKeyPath
	}
	return filepath.Join(c.DataDir, c.SigningKeyPath)
}

// RandomSecret returns n random bytes as unpadded URL-safe base64.
func RandomSecret(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
