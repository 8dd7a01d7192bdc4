package netguard

import (
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// ValidServerName reports whether name is a server name this server may try to reach: the
// grammar of the spec's "Server Name" (a DNS name, an IPv4 address or a bracketed IPv6
// address, with an optional port), at most 255 characters, with a port from 1 to 65535 and
// no empty DNS label. The grammar alone lets "..", ".example.org" or "a..b" through, which
// are no host names but can do harm where a server name becomes a path or a URL.
func ValidServerName(name string) bool {
	if len(name) > 255 {
		return false
	}
	host, port, ok := spec.ParseAndValidateServerName(spec.ServerName(name))
	if !ok || port == 0 {
		return false
	}
	if strings.HasPrefix(host, "[") {
		return true // an IPv6 literal, checked by the parser
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" {
			return false
		}
	}
	return true
}
