package oauthserver

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/net/publicsuffix"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// Grant types.
const (
	grantAuthorizationCode = "authorization_code"
	grantRefreshToken      = "refresh_token"
	grantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"
)

// client is a registered client's metadata (Client-Server API, "Client metadata"), as
// registered: unknown grant and response types are dropped, localised variants kept.
type client struct {
	ID                      string            `json:"client_id"`
	ClientURI               string            `json:"client_uri"`
	ClientName              string            `json:"client_name,omitempty"`
	LogoURI                 string            `json:"logo_uri,omitempty"`
	TOSURI                  string            `json:"tos_uri,omitempty"`
	PolicyURI               string            `json:"policy_uri,omitempty"`
	RedirectURIs            []string          `json:"redirect_uris,omitempty"`
	ResponseTypes           []string          `json:"response_types"`
	GrantTypes              []string          `json:"grant_types"`
	TokenEndpointAuthMethod string            `json:"token_endpoint_auth_method"`
	ApplicationType         string            `json:"application_type"`
	Localised               map[string]string `json:"-"` // "client_name#fr" -> value
}

// MarshalJSON adds the localised variants beside the fields.
func (c client) MarshalJSON() ([]byte, error) {
	type plain client
	b, err := json.Marshal(plain(c))
	if err != nil || len(c.Localised) == 0 {
		return b, err
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for k, v := range c.Localised {
		m[k] = v
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads the fields and the localised variants.
func (c *client) UnmarshalJSON(b []byte) error {
	type plain client
	if err := json.Unmarshal(b, (*plain)(c)); err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	for k, v := range m {
		field, lang, ok := strings.Cut(k, "#")
		str, isStr := v.(string)
		if ok && isStr && lang != "" && slices.Contains([]string{"client_name", "logo_uri", "tos_uri", "policy_uri"}, field) {
			if c.Localised == nil {
				c.Localised = map[string]string{}
			}
			c.Localised[k] = str
		}
	}
	return nil
}

// name is the client's name in lang, or its client URI's host when it has none.
func (c *client) name(lang string) string {
	if v := c.Localised["client_name#"+lang]; v != "" {
		return v
	}
	if c.ClientName != "" {
		return c.ClientName
	}
	u, _ := url.Parse(c.ClientURI)
	return u.Host
}

// dcrError is an RFC 7591 section 3.2.2 error.
type dcrError struct{ code, desc string }

func badMetadata(desc string) *dcrError { return &dcrError{"invalid_client_metadata", desc} }
func badRedirect(desc string) *dcrError { return &dcrError{"invalid_redirect_uri", desc} }
func (e *dcrError) Error() string       { return e.code + ": " + e.desc }
func oauthJSON(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Cache-Control", "no-store")
	httputil.WriteJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// handleRegisterClient handles POST to the registration endpoint: dynamic client
// registration (RFC 7591) under the spec's metadata rules. 201 with the client_id and the
// registered metadata; 400 invalid_client_metadata or invalid_redirect_uri.
func (s *Server) handleRegisterClient(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxClientMetadata+1))
	if err != nil {
		oauthJSON(w, http.StatusBadRequest, "invalid_request", "cannot read the request")
		return
	} else if len(body) > maxClientMetadata {
		oauthJSON(w, http.StatusBadRequest, "invalid_client_metadata", "the client metadata is too large")
		return
	}
	var c client
	if err := json.Unmarshal(body, &c); err != nil {
		oauthJSON(w, http.StatusBadRequest, "invalid_client_metadata", "the body must be a JSON object of client metadata")
		return
	}
	if err := validateClient(&c); err != nil {
		var de *dcrError
		errors.As(err, &de)
		oauthJSON(w, http.StatusBadRequest, de.code, de.desc)
		return
	}
	// Only registrations that are stored count against the address's rate.
	if ok, wait := s.clients.Allow(httputil.RemoteIP(r)); !ok {
		tooMany(w, wait, "too many client registrations from this address")
		return
	}
	c.ID = strings.ToUpper(config.RandomSecret(16))
	c.ID = strings.NewReplacer("-", "0", "_", "1").Replace(c.ID)
	md, _ := json.Marshal(c)
	err = s.db.WithTx(ctx(r), func(tx *storage.Tx) error {
		return tx.InsertOAuthClient(ctx(r), c.ID, string(md), time.Now().UnixMilli())
	})
	if err != nil {
		s.log.Error("register oauth client", "err", err)
		oauthJSON(w, http.StatusInternalServerError, "server_error", "cannot store the client")
		return
	}
	s.collectClients()
	w.Header().Set("Cache-Control", "no-store")
	httputil.WriteJSON(w, http.StatusCreated, c)
}

// tooMany answers 429 with Retry-After. RFC 7591 has no error code for it: the RFC 6749 one
// for a server that cannot answer now.
func tooMany(w http.ResponseWriter, wait time.Duration, desc string) {
	w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
	oauthJSON(w, http.StatusTooManyRequests, "temporarily_unavailable", desc)
}

const (
	maxClientMetadata = 8 << 10 // bytes of a registration's JSON
	maxClientName     = 256     // characters of client_name and its localised variants
	unusedClientAge   = 7 * 24 * time.Hour
	collectEvery      = time.Hour
)

// collectClients deletes, in the background and at most once an hour per process, the
// clients registered a week ago or more that hold no session and no grant: every sign-in of
// a client registers it anew, so registrations would otherwise pile up. Running where
// registrations are made bounds the table with the work that grows it; several processes
// doing it at once delete the same rows, which is harmless.
func (s *Server) collectClients() {
	now := time.Now()
	last := s.lastCollect.Load()
	if now.UnixMilli()-last < collectEvery.Milliseconds() || !s.lastCollect.CompareAndSwap(last, now.UnixMilli()) {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var total int64
		for {
			var n int64
			err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
				var err error
				n, err = tx.DeleteUnusedOAuthClients(ctx, now.Add(-unusedClientAge).UnixMilli(), 500)
				return err
			})
			if err != nil {
				s.log.Error("delete unused oauth clients", "err", err)
				return
			}
			total += n
			if n < 500 {
				break
			}
		}
		if total > 0 {
			s.log.Info("deleted unused oauth clients", "count", total)
		}
	}()
}

// validateClient checks the metadata against the spec's rules and normalises it: defaults
// filled, unknown grant and response types dropped.
func validateClient(c *client) error {
	for k, v := range c.Localised {
		if field, _, _ := strings.Cut(k, "#"); field == "client_name" && utf8.RuneCountInString(v) > maxClientName {
			return badMetadata(k + " is too long")
		}
	}
	if utf8.RuneCountInString(c.ClientName) > maxClientName {
		return badMetadata("client_name is too long")
	}
	cu, err := url.Parse(c.ClientURI)
	switch {
	case c.ClientURI == "":
		return badMetadata("client_uri is required")
	case err != nil || cu.Scheme != "https" || cu.Host == "" || cu.User != nil:
		return badMetadata("client_uri must be an https URL without user or password")
	case !asciiHost(cu.Hostname()):
		// A look-alike of another name ("еxample.com" with a Cyrillic е) would show as that
		// name on the consent page: internationalised names register in their xn-- form.
		return badMetadata("client_uri's host must be ASCII (an internationalised name in its xn-- form)")
	case isPublicSuffix(cu.Hostname()):
		// Every site under it would count as the client's (redirect URIs, logos).
		return badMetadata("client_uri's host must not be a public suffix")
	}
	for field, v := range map[string]string{"logo_uri": c.LogoURI, "tos_uri": c.TOSURI, "policy_uri": c.PolicyURI} {
		if err := checkClientPage(field, v, cu); err != nil {
			return err
		}
	}
	for k, v := range c.Localised {
		if field, _, _ := strings.Cut(k, "#"); field != "client_name" {
			if err := checkClientPage(k, v, cu); err != nil {
				return err
			}
		}
	}
	switch c.ApplicationType {
	case "":
		c.ApplicationType = "web"
	case "web", "native":
	default:
		return badMetadata("application_type must be web or native")
	}
	switch c.TokenEndpointAuthMethod {
	case "":
		c.TokenEndpointAuthMethod = "none"
	case "none":
	default:
		return badMetadata("only public clients (token_endpoint_auth_method none) can register")
	}
	if c.GrantTypes == nil {
		c.GrantTypes = []string{grantAuthorizationCode}
	}
	if c.ResponseTypes == nil {
		c.ResponseTypes = []string{"code"}
	}
	// "The server MUST ignore values that it does not understand."
	c.GrantTypes = slices.DeleteFunc(slices.Clone(c.GrantTypes), func(g string) bool {
		return g != grantAuthorizationCode && g != grantRefreshToken && g != grantDeviceCode
	})
	c.ResponseTypes = slices.DeleteFunc(slices.Clone(c.ResponseTypes), func(t string) bool { return t != "code" })
	code := slices.Contains(c.GrantTypes, grantAuthorizationCode)
	if code != slices.Contains(c.ResponseTypes, "code") {
		return badMetadata("the authorization_code grant type goes with the code response type")
	}
	if code && len(c.RedirectURIs) == 0 {
		return badRedirect("redirect_uris are required for the authorization_code grant type")
	}
	if !code && !slices.Contains(c.GrantTypes, grantDeviceCode) {
		return badMetadata("grant_types must include authorization_code or the device code grant")
	}
	for _, ru := range c.RedirectURIs {
		if err := checkRedirectURI(c.ApplicationType, cu, ru); err != nil {
			return badRedirect(ru + ": " + err.Error())
		}
	}
	return nil
}

// checkClientPage checks logo_uri, tos_uri, policy_uri and their localised variants: https,
// on the client URI's host or one of its subdomains.
func checkClientPage(field, v string, cu *url.URL) error {
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || !asciiHost(u.Hostname()) {
		return badMetadata(field + " must be an https URL with an ASCII host")
	}
	if !sameSite(u.Hostname(), cu.Hostname()) {
		return badMetadata(field + " must be on the host of client_uri or a subdomain of it")
	}
	return nil
}

// sameSite reports whether host is base or a subdomain of it.
func sameSite(host, base string) bool {
	host, base = strings.ToLower(host), strings.ToLower(base)
	return host == base || strings.HasSuffix(host, "."+base)
}

var errNoFragment = errors.New("must not have a fragment")

// checkRedirectURI applies the spec's "Redirect URI validation" to one registered URI.
func checkRedirectURI(appType string, cu *url.URL, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return errors.New("not an absolute URI")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return errNoFragment
	}
	if u.Scheme == "https" {
		// web clients, and native clients' claimed https URIs
		if u.Host == "" || u.User != nil || !asciiHost(u.Hostname()) {
			return errors.New("must have an ASCII host and no user or password")
		}
		if !sameSite(u.Hostname(), cu.Hostname()) {
			return errors.New("must be on the host of client_uri or a subdomain of it")
		}
		return nil
	}
	if appType != "native" {
		return errors.New("web clients must use https")
	}
	if u.Scheme == "http" {
		if !isLoopback(u.Hostname()) {
			return errors.New("http is only for the loopback interface (localhost, 127.0.0.1, [::1])")
		}
		if u.User != nil {
			return errors.New("a loopback redirect URI must not have a user or password")
		}
		if u.Port() != "" {
			return errors.New("a loopback redirect URI must not have a port (any port is accepted when used)")
		}
		return nil
	}
	// A private-use scheme: the client URI's host reversed, without an authority.
	if !reversedHostScheme(u.Scheme, cu.Hostname()) {
		return errors.New("a private-use scheme must be the reverse of the client_uri host")
	}
	if u.Host != "" || strings.HasPrefix(u.Opaque, "//") || strings.HasPrefix(strings.TrimPrefix(raw, u.Scheme+":"), "//") {
		return errors.New("a private-use scheme URI must not have an authority")
	}
	return nil
}

// reversedHostScheme reports whether scheme is host in reverse-DNS notation, possibly with
// more labels after it ("com.example.app" for example.com).
func reversedHostScheme(scheme, host string) bool {
	labels := strings.Split(strings.ToLower(host), ".")
	slices.Reverse(labels)
	rev := strings.Join(labels, ".")
	scheme = strings.ToLower(scheme)
	return len(labels) > 1 && (scheme == rev || strings.HasPrefix(scheme, rev+"."))
}

// asciiHost reports whether host is all ASCII.
func asciiHost(host string) bool {
	for i := 0; i < len(host); i++ {
		if host[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// isPublicSuffix reports whether host is a public suffix ("com", "co.uk", "github.io"),
// under which anyone can register names.
func isPublicSuffix(host string) bool {
	if net.ParseIP(host) != nil {
		return false
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	suffix, _ := publicsuffix.PublicSuffix(host)
	return suffix == host
}

// isLoopback reports whether host names the loopback interface (host names are
// case-insensitive).
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.Equal(net.IPv4(127, 0, 0, 1)) || ip.Equal(net.IPv6loopback))
}

// redirectAllowed reports whether raw, given in an authorization request, is one of the
// client's registered redirect URIs: equal, or for a loopback http URI, equal but for the
// port ("The homeserver MUST then accept any port number").
func (c *client) redirectAllowed(raw string) bool {
	if slices.Contains(c.RedirectURIs, raw) {
		return true
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || !isLoopback(u.Hostname()) || u.Port() == "" || u.User != nil || u.Fragment != "" {
		return false
	}
	u.Host = u.Hostname()
	if strings.Contains(u.Host, ":") {
		u.Host = "[" + u.Host + "]"
	}
	return c.ApplicationType == "native" && slices.Contains(c.RedirectURIs, u.String())
}

// loadClient returns the registered client, or nil when there is none.
func (s *Server) loadClient(r *http.Request, id string) *client {
	if id == "" {
		return nil
	}
	md, err := s.db.OAuthClient(r.Context(), id)
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			s.log.Error("load oauth client", "err", err)
		}
		return nil
	}
	var c client
	if err := json.Unmarshal([]byte(md), &c); err != nil {
		return nil
	}
	return &c
}
