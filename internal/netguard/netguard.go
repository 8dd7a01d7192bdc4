// Package netguard keeps the connections whose destination someone else chooses (a server
// name a user typed, a server name in an mxc:// URI, a URL to preview, a Location a remote
// server answered) away from the addresses only this server can reach: loopback, private
// networks, link-local (where cloud metadata services live) and the other non-public ranges.
// Otherwise any user could make the homeserver probe or talk to its own network ("server-side
// request forgery").
//
// The check runs in the dialer's Control hook, on the address a connection is actually being
// made to, after DNS resolution and before any packet is sent. So a name that resolves to a
// blocked address, at the first lookup or at a later one (DNS rebinding), a .well-known
// delegation, an SRV target and a redirect are all refused the same way as an IP literal.
//
// It imports no other Lattice package.
package netguard

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// ErrBlocked is the error (wrapped) of a connection refused because of its address.
var ErrBlocked = errors.New("destination is in a blocked IP range")

// DefaultBlocked are the ranges refused unless allowed: everything that is not a public
// unicast address (RFC 6890's special-purpose registries). An IPv4-mapped IPv6 address
// (::ffff:a.b.c.d) is checked as the IPv4 address it carries.
var DefaultBlocked = []string{
	// IPv4
	"0.0.0.0/8",       // "this network", and the unspecified address
	"10.0.0.0/8",      // private
	"100.64.0.0/10",   // shared address space (carrier-grade NAT)
	"127.0.0.0/8",     // loopback
	"169.254.0.0/16",  // link-local (cloud metadata services)
	"172.16.0.0/12",   // private
	"192.0.0.0/24",    // IETF protocol assignments
	"192.0.2.0/24",    // documentation
	"192.88.99.0/24",  // 6to4 relay anycast
	"192.168.0.0/16",  // private
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // documentation
	"203.0.113.0/24",  // documentation
	"224.0.0.0/4",     // multicast
	"240.0.0.0/4",     // reserved, and the broadcast address
	// IPv6
	"::/128",         // unspecified
	"::1/128",        // loopback
	"::/96",          // IPv4-compatible (deprecated)
	"64:ff9b::/96",   // NAT64: can reach any IPv4 address, private ones included
	"64:ff9b:1::/48", // local-use NAT64
	"100::/64",       // discard
	"2001:db8::/32",  // documentation
	"2002::/16",      // 6to4: embeds an IPv4 address
	"fc00::/7",       // unique local (private)
	"fe80::/10",      // link-local
	"fec0::/10",      // site-local (deprecated)
	"ff00::/8",       // multicast
}

// Policy decides which addresses outbound connections may reach: any address in an allowed
// range, otherwise any address in no blocked range. Its zero value allows everything.
type Policy struct {
	blocked []netip.Prefix
	allowed []netip.Prefix
}

// New returns the policy refusing the blocked ranges except the allowed ones. Ranges are
// CIDR prefixes ("10.0.0.0/8", "fd00::/8") or single addresses.
func New(blocked, allowed []string) (*Policy, error) {
	b, err := ParseRanges(blocked)
	if err != nil {
		return nil, err
	}
	a, err := ParseRanges(allowed)
	if err != nil {
		return nil, err
	}
	return &Policy{blocked: b, allowed: a}, nil
}

// Default returns the policy refusing DefaultBlocked.
func Default() *Policy {
	p, err := New(DefaultBlocked, nil)
	if err != nil {
		panic(err) // DefaultBlocked is a constant list
	}
	return p
}

// ParseRanges parses CIDR prefixes or single addresses. An IPv4-mapped IPv6 prefix is turned
// into the IPv4 prefix it means, since addresses are checked unmapped.
func ParseRanges(ranges []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ranges))
	for _, r := range ranges {
		p, err := netip.ParsePrefix(r)
		if err != nil {
			a, aerr := netip.ParseAddr(r)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%q is not an IP range (CIDR such as 10.0.0.0/8) or address", r)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Allowed reports whether a connection to ip may be made.
func (p *Policy) Allowed(ip netip.Addr) bool {
	if p == nil {
		return true
	}
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() {
		return false
	}
	for _, r := range p.allowed {
		if r.Contains(ip) {
			return true
		}
	}
	for _, r := range p.blocked {
		if r.Contains(ip) {
			return false
		}
	}
	return true
}

// Control is a net.Dialer Control function: it refuses, before the connection is attempted,
// any address the policy does not allow.
func (p *Policy) Control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q is not host:port", ErrBlocked, address)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %q is not an IP address", ErrBlocked, host)
	}
	if !p.Allowed(ip) {
		return fmt.Errorf("%w: %s", ErrBlocked, ip)
	}
	return nil
}

// Dialer returns a dialer that applies the policy to every address it connects to.
func (p *Policy) Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: p.Control}
}

// HTTPClient returns an HTTP client, bounded by timeout, whose every connection (redirects
// included) goes through the policy. It ignores proxy settings: a proxy would be the one
// address dialled, and the policy would not see the destination.
func (p *Policy) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext:         p.Dialer(timeout).DialContext,
		TLSHandshakeTimeout: timeout,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
	}}
}
