package appservice

import (
	"testing"

	"github.com/lattice-chat/lattice/internal/config"
)

func testRegistry() *Registry {
	url := "http://127.0.0.1:1"
	return NewRegistry(&config.Config{ServerName: "example.org", AppServices: []config.AppService{
		{ID: "irc", URL: &url, ASToken: "as1", HSToken: "hs1", SenderLocalpart: "ircbot", Protocols: []string{"irc"},
			Namespaces: config.AppServiceSpace{
				Users:   []config.AppServiceNamespace{{Exclusive: true, Regex: `@irc_.*:example\.org`}},
				Aliases: []config.AppServiceNamespace{{Exclusive: false, Regex: `#irc_.*`}},
				Rooms:   []config.AppServiceNamespace{{Regex: `!bridged:example\.org`}},
			}},
		{ID: "bot", ASToken: "as2", HSToken: "hs2", SenderLocalpart: "bot",
			Namespaces: config.AppServiceSpace{Users: []config.AppServiceNamespace{{Exclusive: false, Regex: `@irc_shared.*`}}}},
	}})
}

func TestNamespaces(t *testing.T) {
	reg := testRegistry()
	irc, bot := reg.ByID("irc"), reg.ByID("bot")
	for _, tc := range []struct {
		user      string
		ircOwns   bool
		botOwns   bool
		exclusive *Service
	}{
		{"@irc_alice:example.org", true, false, irc},
		{"@ircbot:example.org", true, false, irc},       // the sender
		{"@bot:example.org", false, true, bot},          // the other sender
		{"@x_irc_alice:example.org", false, false, nil}, // matched at the start only
		{"@irc_shared1:example.org", true, true, irc},
		{"@alice:example.org", false, false, nil},
	} {
		if got := irc.OwnsUser(tc.user); got != tc.ircOwns {
			t.Errorf("irc owns %s: %v", tc.user, got)
		}
		if got := bot.OwnsUser(tc.user); got != tc.botOwns {
			t.Errorf("bot owns %s: %v", tc.user, got)
		}
		if got := reg.ExclusiveUser(tc.user); got != tc.exclusive {
			t.Errorf("exclusive owner of %s: %v", tc.user, got)
		}
	}
	if reg.ExclusiveAlias("#irc_chan:example.org") != nil || !irc.InAliases("#irc_chan:example.org") {
		t.Error("non-exclusive alias namespace")
	}
	if !irc.InRooms("!bridged:example.org") || irc.InRooms("!other:example.org") {
		t.Error("rooms namespace")
	}
	if reg.ByToken("as2") != bot || reg.ByToken("as") != nil || reg.ByToken("") != nil {
		t.Error("ByToken")
	}
	if q := reg.UserQueried("@irc_shared1:example.org"); len(q) != 1 || q[0] != irc {
		t.Errorf("services asked about a user: only those with a URL, got %v", q)
	}
	if len(reg.ForProtocol("irc")) != 1 || len(reg.ForProtocol("xmpp")) != 0 {
		t.Error("ForProtocol")
	}
}

func TestMayUseUser(t *testing.T) {
	reg := testRegistry()
	irc, bot := reg.ByID("irc"), reg.ByID("bot")
	for _, tc := range []struct {
		svc  *Service
		user string
		want bool
	}{
		{irc, "@irc_shared:example.org", true},
		{bot, "@irc_shared:example.org", false}, // in bot's namespace, but irc holds it exclusively
		{bot, "@bot:example.org", true},
		{irc, "@bot:example.org", false},
		{irc, "@ircbot:example.org", true},
	} {
		if got := reg.MayUseUser(tc.svc, tc.user); got != tc.want {
			t.Errorf("MayUseUser(%s, %s) = %v, want %v", tc.svc.ID, tc.user, got, tc.want)
		}
	}
}

func TestWithAge(t *testing.T) {
	body := []byte(`{"events":[{"type":"m.room.message","origin_server_ts":1000,"unsigned":{"age":5,"transaction_id":"t"}},{"type":"x","origin_server_ts":2000}],"ephemeral":[]}`)
	got := string(withAge(body, 10000))
	want := `{"ephemeral":[],"events":[{"origin_server_ts":1000,"type":"m.room.message","unsigned":{"age":9000,"transaction_id":"t"}},{"origin_server_ts":2000,"type":"x","unsigned":{"age":8000}}]}`
	if got != want {
		t.Errorf("withAge:\n got %s\nwant %s", got, want)
	}
	if string(withAge([]byte(`{"ephemeral":[1]}`), 5)) != `{"ephemeral":[1]}` {
		t.Error("a body without events changed")
	}
}
