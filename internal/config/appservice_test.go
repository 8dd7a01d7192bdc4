package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const ircRegistration = `id: "IRC Bridge"
url: "http://127.0.0.1:1234"
as_token: "as1"
hs_token: "hs1"
sender_localpart: "_irc_bot"
rate_limited: false
protocols: ["irc"]
de.sorunome.msc2409.push_ephemeral: true
io.element.msc4190: true
some.unknown.key: 1
namespaces:
  users:
    - exclusive: true
      regex: "@_irc_bridge_.*"
  aliases:
    - exclusive: false
      regex: "#_irc_bridge_.*"
  rooms: []
`

func loadWithAppServices(t *testing.T, files map[string]string) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	var list []string
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		list = append(list, "  - "+name)
	}
	cfg := "server_name: example.org\ndata_dir: .\napp_service_config_files:\n" + strings.Join(list, "\n") + "\n"
	path := filepath.Join(dir, "lattice.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(path)
}

func TestAppServiceRegistration(t *testing.T) {
	cfg, err := loadWithAppServices(t, map[string]string{"irc.yaml": ircRegistration})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.AppServices) != 1 {
		t.Fatalf("got %d services", len(cfg.AppServices))
	}
	as := cfg.AppServices[0]
	if as.ID != "IRC Bridge" || *as.URL != "http://127.0.0.1:1234" || !as.Ephemeral() || !as.MSC4190 ||
		len(as.Namespaces.Users) != 1 || !as.Namespaces.Users[0].Exclusive || as.Protocols[0] != "irc" {
		t.Fatalf("unexpected registration: %+v", as)
	}
}

func TestAppServiceNullURL(t *testing.T) {
	cfg, err := loadWithAppServices(t, map[string]string{"a.yaml": strings.Replace(ircRegistration, `url: "http://127.0.0.1:1234"`, "url: null", 1)})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AppServices[0].URL != nil {
		t.Fatal("url: null should be nil")
	}
}

func TestAppServiceErrors(t *testing.T) {
	bad := strings.NewReplacer(`regex: "@_irc_bridge_.*"`, `regex: "@_irc_(bridge"`, `sender_localpart: "_irc_bot"`, "").Replace(ircRegistration)
	_, err := loadWithAppServices(t, map[string]string{"a.yaml": ircRegistration, "b.yaml": ircRegistration, "c.yaml": bad})
	if err == nil {
		t.Fatal("expected errors")
	}
	for _, want := range []string{`same id "IRC Bridge"`, "share a token", "namespaces.users[0].regex", "sender_localpart is required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestAppServiceExclusiveOverlaps(t *testing.T) {
	reg := func(id, tok, sender, users, aliases string) string {
		return "id: " + id + "\nurl: null\nas_token: as_" + tok + "\nhs_token: hs_" + tok + "\nsender_localpart: " + sender +
			"\nnamespaces:\n  users:\n    - exclusive: true\n      regex: \"" + users + "\"\n    - exclusive: false\n      regex: \"@.*\"" +
			"\n  aliases:\n    - exclusive: true\n      regex: \"" + aliases + "\"\n"
	}
	for _, tc := range []struct {
		name string
		a, b string
		want []string // empty: accepted
	}{
		{"disjoint", reg("a", "1", "_a_bot", "@_a_.*", "#_a_.*"), reg("b", "2", "_b_bot", "@_b_.*", "#_b_.*"), nil},
		{"same users regex", reg("a", "1", "a_bot", "@_x_.*", "#_a_.*"), reg("b", "2", "b_bot", "@_x_.*", "#_b_.*"),
			[]string{`"a" (`, `"b" (`, `both hold the users regex "@_x_.*" exclusively`}},
		{"same aliases regex", reg("a", "1", "_a_bot", "@_a_.*", "#_x_.*"), reg("b", "2", "_b_bot", "@_b_.*", "#_x_.*"),
			[]string{`both hold the aliases regex "#_x_.*" exclusively`}},
		{"sender in another's namespace", reg("a", "1", "_a_bot", "@_a_.*", "#_a_.*"), reg("b", "2", "_a_b", "@_b_.*", "#_b_.*"),
			[]string{`app service "b" (`, `has its sender @_a_b:example.org inside the exclusive users namespace "@_a_.*" of app service "a" (`}},
		{"one inside the other", reg("a", "1", "_a_bot", "@_a_.*", "#_a_.*"), reg("b", "2", "_b_bot", "@_.*", "#_b_.*"),
			[]string{"overlapping exclusive users namespaces", `"@_a_.*"`, `"@_.*"`, `both match "@_a_"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadWithAppServices(t, map[string]string{"a.yaml": tc.a, "b.yaml": tc.b})
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("expected an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
