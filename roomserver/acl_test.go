package roomserver

import (
	"context"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		glob, name string
		want       bool
	}{
		{"*", "", true},
		{"*", "evil.com", true},
		{"", "", true},
		{"", "a", false},
		{"evil.com", "evil.com", true},
		{"evil.com", "evil.co", false},
		{"evil.com", "evil.comm", false},
		{"*.evil.com", "evil.com", false},
		{"*.evil.com", "sub.evil.com", true},
		{"*.evil.com", "a.b.evil.com", true},
		{"*evil.com", "evil.com", true},
		{"ev?l.com", "evil.com", true},
		{"ev?l.com", "evl.com", false},
		{"ev?l.com", "eviil.com", false},
		{"?", "é", true}, // one character, two bytes
		{"*a*b*c", "xaybzc", true},
		{"*a*b*c", "xaybzcx", false},
		{"a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
		{"**", "abc", true},
		{"*?", "", false},
		{"*?", "a", true},
		{"1.2.3.*", "1.2.3.4", true},
	}
	for _, tt := range tests {
		if got := globMatch(tt.glob, tt.name); got != tt.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tt.glob, tt.name, got, tt.want)
		}
	}
}

func TestACLAllows(t *testing.T) {
	const denyEvil = `{"allow":["*"],"deny":["*.evil.com","evil.com"]}`
	tests := []struct {
		name    string
		content string
		server  spec.ServerName
		want    bool
	}{
		{"allowed by *", denyEvil, "good.org", true},
		{"denied", denyEvil, "evil.com", false},
		{"denied subdomain", denyEvil, "a.evil.com", false},
		{"port not considered", denyEvil, "evil.com:8448", false},
		{"case ignored in name", denyEvil, "EVIL.com", false},
		{"case ignored in glob", `{"allow":["GOOD.org"]}`, "good.org", true},
		{"deny before allow", `{"allow":["evil.com"],"deny":["evil.com"]}`, "evil.com", false},
		{"not in allow", `{"allow":["good.org"]}`, "other.org", false},
		{"no allow denies everyone", `{"deny":[]}`, "good.org", false},
		{"empty content denies everyone", `{}`, "good.org", false},
		{"allow not an array", `{"allow":"*"}`, "good.org", false},
		{"non-string entries skipped", `{"allow":[1,null,"good.org"]}`, "good.org", true},
		{"IPv4 literal allowed by default", `{"allow":["*"]}`, "1.2.3.4", true},
		{"IPv4 literal denied", `{"allow":["*"],"allow_ip_literals":false}`, "1.2.3.4:8448", false},
		{"IPv6 literal denied", `{"allow":["*"],"allow_ip_literals":false}`, "[::1]:8448", false},
		{"IPv6 literal without port denied", `{"allow":["*"],"allow_ip_literals":false}`, "[2001:db8::1]", false},
		{"IPv4 literal allowed explicitly", `{"allow":["*"],"allow_ip_literals":true}`, "1.2.3.4", true},
		{"allow_ip_literals not a boolean is true", `{"allow":["*"],"allow_ip_literals":"no"}`, "1.2.3.4", true},
		{"name that looks numeric is not a literal", `{"allow":["*"],"allow_ip_literals":false}`, "1.2.3.4.example", true},
		{"IP literal matched by glob", `{"allow":["1.2.3.*"]}`, "1.2.3.4:8448", true},
		{"IPv6 literal denied by glob", `{"allow":["*"],"deny":["[::1]"]}`, "[::1]:443", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := aclAllows([]byte(tt.content), tt.server); got != tt.want {
				t.Errorf("aclAllows(%s, %s) = %v, want %v", tt.content, tt.server, got, tt.want)
			}
		})
	}
}

// TestServerAllowed reads the ACL from a room's current state: no ACL allows, an ACL
// applies, a replaced ACL applies in its new form, and unknown rooms allow.
func TestServerAllowed(t *testing.T) {
	storagetest.ForEachBackend(t, testServerAllowed)
}

func testServerAllowed(t *testing.T, url string) {
	ctx := context.Background()
	s, _ := newTestServer(t, url)
	const alice = "@alice:test"
	roomID, err := s.CreateRoom(ctx, alice, "D", CreateRoomRequest{Preset: PresetPublicChat})
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.CreateRoom(ctx, alice, "D", CreateRoomRequest{Preset: PresetPublicChat})
	if err != nil {
		t.Fatal(err)
	}
	if !s.ServerAllowed(ctx, roomID, "evil.com") {
		t.Fatal("a room without an ACL denies")
	}
	acl := func(content string) {
		t.Helper()
		if _, err := s.SetState(ctx, Sender{UserID: alice}, roomID, mRoomServerACL, "", []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	acl(`{"allow":["*"],"deny":["evil.com"]}`)
	if s.ServerAllowed(ctx, roomID, "evil.com:8448") {
		t.Error("denied server allowed")
	}
	if !s.ServerAllowed(ctx, roomID, "good.org") {
		t.Error("allowed server denied")
	}
	if !s.ServerAllowed(ctx, other, "evil.com") {
		t.Error("another room's ACL applied")
	}
	acl(`{"allow":["evil.com"]}`)
	if !s.ServerAllowed(ctx, roomID, "evil.com") || s.ServerAllowed(ctx, roomID, "good.org") {
		t.Error("the replaced ACL still applies")
	}
	if !s.ServerAllowed(ctx, "!unknown:test", "evil.com") {
		t.Error("an unknown room denies")
	}
}
