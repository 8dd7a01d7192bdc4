package federationapi

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/netguard"
)

// TestResolutionCache: a server name is resolved (.well-known, SRV) once and the answer
// reused until it expires; a failure is cached for a shorter time; a request the caller
// gave up on caches nothing.
func TestResolutionCache(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	calls := map[spec.ServerName]int{}
	fail := map[spec.ServerName]bool{"down.test": true}
	tr := &matrixTransport{
		now: func() time.Time { return now },
		resolve: func(ctx context.Context, name spec.ServerName) ([]fclient.ResolutionResult, error) {
			calls[name]++
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if fail[name] {
				return nil, errors.New("no such host")
			}
			return []fclient.ResolutionResult{{Destination: "127.0.0.1:8448", Host: name, TLSServerName: string(name)}}, nil
		},
	}
	ctx := context.Background()
	for range 3 {
		if res, err := tr.resolved(ctx, "example.test"); err != nil || len(res) != 1 {
			t.Fatalf("resolve example.test: %v %v", res, err)
		}
		if _, err := tr.resolved(ctx, "down.test"); err == nil {
			t.Fatal("resolving down.test succeeded")
		}
	}
	if calls["example.test"] != 1 || calls["down.test"] != 1 {
		t.Fatalf("resolutions %v, want one each while cached", calls)
	}
	now = now.Add(resolutionErrorTTL + time.Second)
	tr.resolved(ctx, "example.test")
	tr.resolved(ctx, "down.test")
	if calls["example.test"] != 1 || calls["down.test"] != 2 {
		t.Fatalf("after %v: resolutions %v, want the failure retried only", resolutionErrorTTL, calls)
	}
	now = now.Add(resolutionTTL)
	tr.resolved(ctx, "example.test")
	if calls["example.test"] != 2 {
		t.Fatalf("after %v: resolutions %v, want example.test resolved again", resolutionTTL, calls)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := tr.resolved(cancelled, "new.test"); err == nil {
		t.Fatal("a cancelled resolution succeeded")
	}
	if _, err := tr.resolved(ctx, "new.test"); err != nil {
		t.Fatalf("new.test after a cancelled attempt: %v", err)
	}
}

// TestClientGuard: the federation client connects to no address its guard blocks, whether
// the server name is an IP literal or a name resolving to it, and the listener never sees a
// connection; names that are no server names are refused before any resolution.
func TestClientGuard(t *testing.T) {
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
	_, priv, _ := ed25519.GenerateKey(nil)
	c, err := NewClient(ClientConfig{ServerName: "us.test", KeyID: "ed25519:k", PrivateKey: priv})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, server := range []spec.ServerName{spec.ServerName(ln.Addr().String()), spec.ServerName("localhost:" + port)} {
		if _, err := c.QueryProfile(ctx, server, "@x:"+string(server)); !errors.Is(err, netguard.ErrBlocked) {
			t.Errorf("profile from %s: %v, want netguard.ErrBlocked", server, err)
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the loopback listener accepted %d connections", n)
	}
	for _, server := range []spec.ServerName{"..", "..:8448", "a..b"} {
		if _, err := c.QueryProfile(ctx, server, "@x:example.test"); err == nil || !strings.Contains(err.Error(), "invalid server name") {
			t.Errorf("profile from %q: %v, want an invalid server name", server, err)
		}
	}
}

// TestResolveInvalidTLD: names under .invalid fail at once, without asking the DNS (RFC 6761
// section 6.4); other names are resolved.
func TestResolveInvalidTLD(t *testing.T) {
	tr := &matrixTransport{}
	for _, name := range []spec.ServerName{"example.invalid", "Example.INVALID", "a.b.invalid:8448", "invalid"} {
		if _, err := tr.resolveName(context.Background(), name); err == nil || !strings.Contains(err.Error(), "RFC 6761") {
			t.Errorf("resolveName(%s): %v, want the .invalid refusal", name, err)
		}
	}
	for _, host := range []string{"invalid.example.org", "example.invalidx", "127.0.0.1"} {
		if reservedInvalid(host) {
			t.Errorf("reservedInvalid(%s) = true", host)
		}
	}
}
