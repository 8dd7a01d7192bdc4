package netguard

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestDefaultPolicy(t *testing.T) {
	p := Default()
	for addr, want := range map[string]bool{
		"8.8.8.8":                true,
		"93.184.215.14":          true,
		"2606:4700::1111":        true,
		"::ffff:93.184.215.14":   true,
		"127.0.0.1":              false,
		"127.255.255.254":        false,
		"10.1.2.3":               false,
		"172.16.0.1":             false,
		"172.31.255.255":         false,
		"192.168.1.1":            false,
		"169.254.169.254":        false, // cloud metadata
		"100.64.0.1":             false, // carrier-grade NAT
		"0.0.0.0":                false,
		"224.0.0.1":              false,
		"239.255.255.250":        false,
		"255.255.255.255":        false,
		"198.18.0.1":             false,
		"::1":                    false,
		"::":                     false,
		"::127.0.0.1":            false, // IPv4-compatible
		"fe80::1":                false,
		"fe80::1%eth0":           false,
		"fd00::1":                false,
		"fc00::1":                false,
		"ff02::1":                false,
		"::ffff:127.0.0.1":       false, // IPv4-mapped loopback
		"::ffff:10.0.0.1":        false,
		"::ffff:169.254.169.254": false,
		"64:ff9b::a00:1":         false, // NAT64 of 10.0.0.1
		"2002:a00:1::1":          false, // 6to4 of 10.0.0.1
		"172.32.0.1":             true,  // just outside 172.16/12
		"100.128.0.1":            true,  // just outside 100.64/10
	} {
		if got := p.Allowed(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Allowed(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestAllowedAndExtraRanges(t *testing.T) {
	p, err := New(append(DefaultBlocked, "93.184.0.0/16"), []string{"127.0.0.0/8", "::1", "10.1.2.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"127.0.0.1":        true,
		"::ffff:127.0.0.1": true, // the mapped form is the same address
		"::1":              true,
		"10.1.2.3":         true,
		"10.1.3.1":         false, // rest of 10/8 stays blocked
		"192.168.1.1":      false,
		"fe80::1":          false,
		"93.184.215.14":    false, // an extra blocked range
		"8.8.8.8":          true,
	} {
		if got := p.Allowed(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Allowed(%s) = %v, want %v", addr, got, want)
		}
	}
	var zero *Policy
	if !zero.Allowed(netip.MustParseAddr("127.0.0.1")) || !(&Policy{}).Allowed(netip.MustParseAddr("10.0.0.1")) {
		t.Error("a nil or zero policy blocks")
	}
}

func TestParseRanges(t *testing.T) {
	got, err := ParseRanges([]string{"10.0.0.0/8", "10.1.2.3", "::ffff:192.168.0.0/112", "fd00::1/8"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "10.1.2.3/32", "192.168.0.0/16", "fd00::/8"}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("range %d: %s, want %s", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "example.org", "", "fe80::1%eth0"} {
		if _, err := ParseRanges([]string{bad}); err == nil {
			t.Errorf("ParseRanges(%q) succeeded", bad)
		}
	}
}

// abortingDialer applies p's check and records its verdict, then aborts every connection
// whatever the verdict, so that no packet ever leaves for a non-loopback address even if the
// check were broken.
func abortingDialer(p *Policy, verdicts *[]error) *net.Dialer {
	return &net.Dialer{Timeout: time.Second, Control: func(network, address string, c syscall.RawConn) error {
		*verdicts = append(*verdicts, p.Control(network, address, c))
		return errAborted
	}}
}

var errAborted = errors.New("aborted by the test")

// TestControlRefusesBeforeDialling: the dialer's Control hook sees the resolved address of
// every attempt and refuses the blocked ones; IP literals of every kind, unit level only.
func TestControlRefusesBeforeDialling(t *testing.T) {
	p := Default()
	for _, addr := range []string{"10.0.0.1:80", "169.254.169.254:80", "[fe80::1]:443", "[fd00::1]:8448", "[::ffff:10.0.0.1]:80", "100.64.0.1:22"} {
		var verdicts []error
		_, err := abortingDialer(p, &verdicts).DialContext(context.Background(), "tcp", addr)
		if err == nil {
			t.Fatalf("dial %s succeeded", addr)
		}
		if len(verdicts) != 1 || !errors.Is(verdicts[0], ErrBlocked) {
			t.Errorf("dial %s: verdicts %v, want one ErrBlocked", addr, verdicts)
		}
	}
	var verdicts []error
	abortingDialer(p, &verdicts).DialContext(context.Background(), "tcp", "93.184.215.14:443")
	if len(verdicts) != 1 || verdicts[0] != nil {
		t.Errorf("dial of a public address: verdicts %v, want it allowed", verdicts)
	}
}

// TestDialerOnLoopback: a real connection to a loopback listener, by IP literal and by a name
// that resolves to loopback, is refused by default without the listener seeing it, and made
// once loopback is allowed.
func TestDialerOnLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	targets := []string{ln.Addr().String(), "localhost:" + port}
	for _, target := range targets {
		if _, err := Default().Dialer(time.Second).Dial("tcp4", target); !errors.Is(err, ErrBlocked) {
			t.Errorf("dial %s with the default policy: %v, want ErrBlocked", target, err)
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("the listener accepted %d connections through the default policy", n)
	}
	allow, err := New(DefaultBlocked, []string{"127.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range targets {
		c, err := allow.Dialer(time.Second).Dial("tcp4", target)
		if err != nil {
			t.Fatalf("dial %s with loopback allowed: %v", target, err)
		}
		c.Close()
	}
	if v6, err := net.Listen("tcp", "[::1]:0"); err == nil {
		defer v6.Close()
		if _, err := Default().Dialer(time.Second).Dial("tcp", v6.Addr().String()); !errors.Is(err, ErrBlocked) {
			t.Errorf("dial %s with the default policy: %v, want ErrBlocked", v6.Addr(), err)
		}
	}
}

func TestValidServerName(t *testing.T) {
	for name, want := range map[string]bool{
		"example.org":          true,
		"example.org:8448":     true,
		"localhost":            true,
		"127.0.0.1:8448":       true,
		"[::1]":                true,
		"[::1]:8448":           true,
		"matrix-1.example.org": true,
		"":                     false,
		"..":                   false,
		".":                    false,
		"..:8448":              false,
		".example.org":         false,
		"example..org":         false,
		"example.org.":         false,
		"example.org:0":        false,
		"example.org:65536":    false,
		"example.org:":         false,
		"exa mple.org":         false,
		"example.org/..":       false,
		"[::1":                 false,
		"[example]":            false,
		"ex%41mple.org":        false,
		"@example.org":         false,
	} {
		if got := ValidServerName(name); got != want {
			t.Errorf("ValidServerName(%q) = %v, want %v", name, got, want)
		}
	}
	long := ""
	for len(long) < 256 {
		long += "a."
	}
	if ValidServerName(long + "org") {
		t.Error("a name over 255 characters is valid")
	}
}
