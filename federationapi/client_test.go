package federationapi

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
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
