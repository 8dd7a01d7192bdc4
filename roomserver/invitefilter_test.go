package roomserver

import (
	"encoding/json"
	"testing"
)

func TestInvitePermissionsVerdict(t *testing.T) {
	tests := []struct {
		name    string
		rules   string // org.matrix.msc4155.invite_permission_config content
		inviter string
		want    InviteAction
	}{
		{"empty", `{}`, "@a:x.org", InviteAllow},
		{"disabled", `{"enabled":false,"blocked_servers":["*"]}`, "@a:x.org", InviteAllow},
		{"no invites at all", `{"blocked_servers":["*"]}`, "@a:x.org", InviteBlock},
		{"only goodguys", `{"allowed_servers":["goodguys.org"],"blocked_servers":["*"]}`, "@a:goodguys.org", InviteAllow},
		{"only goodguys, other", `{"allowed_servers":["goodguys.org"],"blocked_servers":["*"]}`, "@a:bad.org", InviteBlock},
		{"server port stripped", `{"blocked_servers":["bad.org"]}`, "@a:bad.org:8448", InviteBlock},
		{"server case", `{"blocked_servers":["BAD.org"]}`, "@a:bad.ORG", InviteBlock},
		{"ipv6 literal", `{"blocked_servers":["[::1]"]}`, "@a:[::1]:8448", InviteBlock},
		{"user allowed over server block", `{"allowed_users":["@goodguy:badguys.org"],"blocked_servers":["badguys.org"]}`, "@goodguy:badguys.org", InviteAllow},
		{"user blocked over server allow", `{"blocked_users":["@not:goodguys.org"],"allowed_servers":["goodguys.org"],"blocked_servers":["*"]}`, "@not:goodguys.org", InviteBlock},
		{"ignored user before blocked user", `{"ignored_users":["@spam*"],"blocked_users":["*"]}`, "@spammer:x.org", InviteIgnore},
		{"ignored server", `{"allowed_servers":["good.org"],"ignored_servers":["*.bad.org"],"blocked_servers":["*"]}`, "@a:very.bad.org", InviteIgnore},
		{"user glob ?", `{"blocked_users":["@bo?:x.org"]}`, "@bob:x.org", InviteBlock},
		{"user glob no match", `{"blocked_users":["@bo?:x.org"]}`, "@bobby:x.org", InviteAllow},
		{"null lists", `{"allowed_users":null,"blocked_servers":["x.org"]}`, "@a:x.org", InviteBlock},
	}
	for _, tt := range tests {
		var r msc4155Rules
		if err := json.Unmarshal([]byte(tt.rules), &r); err != nil {
			t.Fatal(err)
		}
		p := &InvitePermissions{rules: &r}
		if r.Enabled != nil && !*r.Enabled {
			p = nil // as readInvitePermissions: a disabled configuration is none
		}
		if got := p.Verdict(tt.inviter); got != tt.want {
			t.Errorf("%s: Verdict(%s) = %d, want %d", tt.name, tt.inviter, got, tt.want)
		}
	}
	if (&InvitePermissions{blockAll: true, rules: &msc4155Rules{AllowedUsers: []string{"*"}}}).Verdict("@a:x.org") != InviteBlock {
		t.Error("default_action block does not outrank the MSC4155 allow list")
	}
}
