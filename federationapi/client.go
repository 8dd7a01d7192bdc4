package federationapi

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/netguard"
	"github.com/lattice-chat/lattice/internal/version"
)

// ClientConfig configures an outbound federation client.
type ClientConfig struct {
	// ServerName, KeyID and PrivateKey are the identity requests are signed with.
	ServerName spec.ServerName
	KeyID      gomatrixserverlib.KeyID
	PrivateKey ed25519.PrivateKey
	// VerifyTLS checks servers' certificates against RootCAs (nil: the system's roots).
	VerifyTLS bool
	RootCAs   *x509.CertPool
	// Timeout bounds each request; zero means 30 seconds.
	Timeout time.Duration
	// Guard checks every address connected to (.well-known, SRV targets and the servers
	// themselves), after DNS resolution; nil means netguard.Default(). Server names come from
	// users and other servers, who must not reach this server's own network through it.
	Guard *netguard.Policy
}

// Client sends federation requests signed as one server (X-Matrix). Server names are
// resolved as the spec's "Resolving server names" says (gomatrixserverlib's ResolveServer),
// and connections use TLS with the configured trust.
type Client struct {
	origin spec.ServerName
	fc     fclient.FederationClient
}

// NewClient returns a federation client.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.ServerName == "" || cfg.KeyID == "" || len(cfg.PrivateKey) != ed25519.PrivateKeySize {
		return nil, errors.New("federation client: server name, key ID and ed25519 key are required")
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	if cfg.Guard == nil {
		cfg.Guard = netguard.Default()
	}
	tr := &matrixTransport{
		tls:        &tls.Config{RootCAs: cfg.RootCAs, InsecureSkipVerify: !cfg.VerifyTLS, MinVersion: tls.VersionTLS12},
		dialer:     cfg.Guard.Dialer(30 * time.Second),
		transports: map[string]*http.Transport{},
		now:        time.Now,
	}
	tr.resolve = tr.resolveName
	fc := fclient.NewFederationClient(
		[]*fclient.SigningIdentity{{ServerName: cfg.ServerName, KeyID: cfg.KeyID, PrivateKey: cfg.PrivateKey}},
		fclient.WithTransport(tr), fclient.WithTimeout(timeout), fclient.WithUserAgent("Lattice/"+version.String()),
	)
	return &Client{origin: cfg.ServerName, fc: fc}, nil
}

// Federation returns gomatrixserverlib's client, for the requests later slices make
// (transactions, joins, backfill).
func (c *Client) Federation() fclient.FederationClient { return c.fc }

// QueryProfile asks server for the profile of one of its users
// (GET /_matrix/federation/v1/query/profile).
func (c *Client) QueryProfile(ctx context.Context, server spec.ServerName, userID string) (fclient.RespProfile, error) {
	res, err := c.fc.LookupProfile(ctx, c.origin, server, userID, "")
	if err != nil {
		return res, fmt.Errorf("query profile of %s on %s: %w", userID, server, err)
	}
	return res, nil
}

// matrixTransport sends the matrix://SERVER/... requests of gomatrixserverlib's client:
// it resolves SERVER (IP literal, explicit port, .well-known, SRV) and connects over TLS,
// checking the certificate against the TLS server name of the resolution.
type matrixTransport struct {
	tls *tls.Config
	// dialer connects only to the addresses the configured netguard.Policy allows.
	dialer *net.Dialer
	mu     sync.Mutex
	// transports holds one transport per TLS server name (the name sets SNI and the
	// certificate check); guarded by mu.
	transports map[string]*http.Transport

	// resolve is resolveName (tests replace it); its answers are cached in
	// resolutions, guarded by rmu, so that .well-known and SRV are not asked on every request.
	resolve     func(ctx context.Context, name spec.ServerName) ([]fclient.ResolutionResult, error)
	now         func() time.Time
	rmu         sync.Mutex
	resolutions map[spec.ServerName]resolution
}

// resolution is a cached answer of server name resolution.
type resolution struct {
	results []fclient.ResolutionResult
	err     error
	expires time.Time
}

// How long resolutions are kept. The spec lets .well-known answers be cached (24 hours when
// the response says nothing) and asks that failures be retried later (an hour); SRV records
// carry their own TTL, which the library does not expose, so an hour is the bound for both.
const (
	resolutionTTL      = time.Hour
	resolutionErrorTTL = 5 * time.Minute
)

// resolveName resolves a server name as the spec's "Resolving server names" says. Every
// HTTP request of it is made here, through this transport (its TLS settings and its
// netguard dialer): gomatrixserverlib's ResolveServer fetches .well-known for a name without
// a port with a client of its own, which neither checks addresses nor refuses redirects, so it
// is only given names it resolves without HTTP (IP literals, explicit ports).
//  1. an IP literal, or 2. a name with a port: used as it is;
//  3. .well-known (through this transport) delegates to a name, resolved by steps 1, 2 and 4-6
//     but not by .well-known again;
//  4. and 5. SRV records _matrix-fed._tcp, then the deprecated _matrix._tcp;
//  6. port 8448.
func (t *matrixTransport) resolveName(ctx context.Context, name spec.ServerName) ([]fclient.ResolutionResult, error) {
	if !netguard.ValidServerName(string(name)) {
		return nil, errors.New("invalid server name")
	}
	host, port, _ := spec.ParseAndValidateServerName(name)
	if reservedInvalid(host) {
		return nil, errors.New("names under .invalid never resolve (RFC 6761)")
	}
	if port != -1 || net.ParseIP(strings.Trim(host, "[]")) != nil {
		return fclient.ResolveServer(ctx, name)
	}
	if delegated, err := t.wellKnown(ctx, name, host); err == nil {
		name = delegated
		dhost, dport, ok := spec.ParseAndValidateServerName(delegated)
		if !ok || reservedInvalid(dhost) {
			return nil, errors.New("invalid delegated server name")
		}
		if dport != -1 || net.ParseIP(strings.Trim(dhost, "[]")) != nil {
			return fclient.ResolveServer(ctx, delegated)
		}
	}
	return resolveSRV(ctx, name), nil
}

// resolveSRV is steps 4 to 6 of server name resolution for a name without a port: the
// targets of its SRV records (_matrix-fed._tcp, then _matrix._tcp), else the name on port
// 8448. The Host header and TLS server name stay the server name.
func resolveSRV(ctx context.Context, name spec.ServerName) []fclient.ResolutionResult {
	for _, service := range []string{"matrix-fed", "matrix"} {
		_, records, err := net.DefaultResolver.LookupSRV(ctx, service, "tcp", string(name))
		if err != nil || len(records) == 0 {
			continue
		}
		out := make([]fclient.ResolutionResult, 0, len(records))
		for _, rec := range records {
			target := strings.TrimSuffix(rec.Target, ".")
			out = append(out, fclient.ResolutionResult{
				Destination: net.JoinHostPort(target, strconv.Itoa(int(rec.Port))), Host: name, TLSServerName: string(name),
			})
		}
		return out
	}
	return []fclient.ResolutionResult{{Destination: net.JoinHostPort(string(name), "8448"), Host: name, TLSServerName: string(name)}}
}

// reservedInvalid reports whether host is in the .invalid top-level domain, which RFC 6761
// (section 6.4) reserves for names that must never resolve: resolvers should answer at once
// rather than ask the DNS, which may be slow or unreachable.
func reservedInvalid(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	return host == "invalid" || strings.HasSuffix(host, ".invalid")
}

// maxWellKnownBytes bounds the .well-known document read.
const maxWellKnownBytes = 50 << 10

// wellKnown fetches https://name/.well-known/matrix/server and returns the server name it
// delegates to.
func (t *matrixTransport) wellKnown(ctx context.Context, name spec.ServerName, host string) (spec.ServerName, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "https://"+string(name)+"/.well-known/matrix/server", nil)
	if err != nil {
		return "", err
	}
	client := &http.Client{Transport: t.transport(host)}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf(".well-known of %s: HTTP %d", name, resp.StatusCode)
	}
	var doc struct {
		Server spec.ServerName `json:"m.server"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxWellKnownBytes)).Decode(&doc); err != nil {
		return "", fmt.Errorf(".well-known of %s: %w", name, err)
	}
	if !netguard.ValidServerName(string(doc.Server)) {
		return "", fmt.Errorf(".well-known of %s: invalid m.server %q", name, doc.Server)
	}
	return doc.Server, nil
}

// resolved returns the resolution of name, from the cache while it is fresh.
func (t *matrixTransport) resolved(ctx context.Context, name spec.ServerName) ([]fclient.ResolutionResult, error) {
	now := t.now()
	t.rmu.Lock()
	if c, ok := t.resolutions[name]; ok && now.Before(c.expires) {
		t.rmu.Unlock()
		return c.results, c.err
	}
	t.rmu.Unlock()
	results, err := t.resolve(ctx, name)
	if err == nil && len(results) == 0 {
		err = errors.New("no address")
	}
	if err != nil {
		err = fmt.Errorf("resolve %s: %w", name, err)
		if ctx.Err() != nil {
			return nil, err // the caller gave up: not the server's fault, nothing to cache
		}
	}
	ttl := resolutionTTL
	if err != nil {
		ttl = resolutionErrorTTL
	}
	t.rmu.Lock()
	if t.resolutions == nil {
		t.resolutions = map[spec.ServerName]resolution{}
	}
	t.resolutions[name] = resolution{results: results, err: err, expires: now.Add(ttl)}
	t.rmu.Unlock()
	return results, err
}

// RoundTrip implements http.RoundTripper.
func (t *matrixTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "matrix" {
		return nil, fmt.Errorf("federation transport: unsupported URL scheme %q", r.URL.Scheme)
	}
	results, err := t.resolved(r.Context(), spec.ServerName(r.URL.Host))
	if err != nil {
		return nil, err
	}
	var lastErr error
	for i, res := range results {
		req := r.Clone(r.Context())
		if i > 0 && r.GetBody != nil {
			if req.Body, err = r.GetBody(); err != nil {
				return nil, err
			}
		}
		u := *r.URL
		u.Scheme, u.Host = "https", res.Destination
		req.URL, req.Host = &u, string(res.Host)
		resp, err := t.transport(res.TLSServerName).RoundTrip(req)
		if err == nil {
			return resp, nil
		}
		lastErr = err
		if i == 0 && r.GetBody == nil && r.Body != nil {
			break // the body is spent; it cannot be sent to the next address
		}
	}
	return nil, lastErr
}

func (t *matrixTransport) transport(tlsServerName string) *http.Transport {
	t.mu.Lock()
	defer t.mu.Unlock()
	tr, ok := t.transports[tlsServerName]
	if !ok {
		cfg := t.tls.Clone()
		cfg.ServerName = tlsServerName
		tr = &http.Transport{
			DialContext:         t.dialer.DialContext,
			TLSClientConfig:     cfg,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   true,
		}
		t.transports[tlsServerName] = tr
	}
	return tr
}
