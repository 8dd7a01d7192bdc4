package config

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// AppService is one application service registration file (Application Service API,
// "Registration"), as bridges such as mautrix and matrix-appservice-bridge write them.
// Keys this server does not know are ignored: registration generators add their own.
type AppService struct {
	ID string `yaml:"id"`
	// URL is where the service listens; nil (url: null or missing) means it wants no traffic.
	URL             *string         `yaml:"url"`
	ASToken         string          `yaml:"as_token"`
	HSToken         string          `yaml:"hs_token"`
	SenderLocalpart string          `yaml:"sender_localpart"`
	Namespaces      AppServiceSpace `yaml:"namespaces"`
	// RateLimited is whether the service's users are rate-limited; absent means false (the
	// service is trusted operator configuration). The sender is never rate-limited.
	RateLimited bool     `yaml:"rate_limited"`
	Protocols   []string `yaml:"protocols"`
	// ReceiveEphemeral asks for typing, receipts and presence in transactions (spec v1.13);
	// PushEphemeral is its unstable name from MSC2409, which bridges still write.
	ReceiveEphemeral bool `yaml:"receive_ephemeral"`
	PushEphemeral    bool `yaml:"de.sorunome.msc2409.push_ephemeral"`
	// MSC3202 turns on device masquerading with org.matrix.msc3202.device_id (and, in
	// Synapse, encryption data in transactions).
	MSC3202 bool `yaml:"org.matrix.msc3202"`
	// MSC4190 is the service's opting in to device management without /login (its stable
	// name is device_management). Every service may create and delete its users' devices
	// without user-interactive authentication (spec v1.17) whatever the flag; with it, login
	// with m.login.application_service, and registration without inhibit_login, are refused
	// with M_APPSERVICE_LOGIN_UNSUPPORTED, as the MSC says.
	MSC4190 bool `yaml:"io.element.msc4190"`

	// Path is the file the registration was read from.
	Path string `yaml:"-"`
}

// AppServiceSpace lists the namespaces of a registration.
type AppServiceSpace struct {
	Users   []AppServiceNamespace `yaml:"users" json:"users"`
	Aliases []AppServiceNamespace `yaml:"aliases" json:"aliases"`
	Rooms   []AppServiceNamespace `yaml:"rooms" json:"rooms"`
}

// AppServiceNamespace is one regular expression of a namespace. Like Synapse, a value is in
// the namespace when the expression matches at its start.
//
// Exclusive namespaces of different services must not overlap. Whether two regular
// expressions share a match cannot be decided cheaply in general, so loading refuses only
// the overlaps it can show: the same exclusive expression in two services, a service's
// sender inside another's exclusive users namespace, and an exclusive expression matching
// the literal start of another's (such as "@_irc_.*" and "@_irc_bridge_.*"). Others, such
// as "@_a[bc]_.*" and "@_ac_.*", are not detected.
type AppServiceNamespace struct {
	Exclusive bool   `yaml:"exclusive" json:"exclusive"`
	Regex     string `yaml:"regex" json:"regex"`
}

// Ephemeral reports whether the service wants ephemeral data, by either name.
func (a *AppService) Ephemeral() bool { return a.ReceiveEphemeral || a.PushEphemeral }

// LoadAppServices reads and checks the registration files listed in
// app_service_config_files (relative paths are below data_dir), reporting every problem.
func (c *Config) LoadAppServices() ([]AppService, error) {
	var out []AppService
	var errs []error
	for _, p := range c.AppServiceConfigFiles {
		path := c.dataPath(p)
		raw, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("app_service_config_files: %w", err))
			continue
		}
		var as AppService
		if err := yaml.Unmarshal(raw, &as); err != nil {
			errs = append(errs, fmt.Errorf("app service %s: %w", path, err))
			continue
		}
		as.Path = path
		if e := as.validate(); len(e) > 0 {
			errs = append(errs, fmt.Errorf("app service %s: %w", path, errors.Join(e...)))
			continue
		}
		out = append(out, as)
	}
	errs = append(errs, uniqueAppServices(out)...)
	errs = append(errs, exclusiveOverlaps(out, c.ServerName)...)
	return out, errors.Join(errs...)
}

func (a *AppService) validate() []error {
	var errs []error
	for _, f := range []struct{ name, val string }{
		{"id", a.ID}, {"as_token", a.ASToken}, {"hs_token", a.HSToken}, {"sender_localpart", a.SenderLocalpart},
	} {
		if f.val == "" {
			errs = append(errs, fmt.Errorf("%s is required", f.name))
		}
	}
	if a.SenderLocalpart != "" && !noticesLocalpart.MatchString(a.SenderLocalpart) {
		errs = append(errs, fmt.Errorf("sender_localpart %q may contain only a-z, 0-9, . _ = - / +", a.SenderLocalpart))
	}
	if a.URL != nil && *a.URL != "" && !strings.HasPrefix(*a.URL, "http://") && !strings.HasPrefix(*a.URL, "https://") {
		errs = append(errs, fmt.Errorf("url %q must start with http:// or https:// (or be null)", *a.URL))
	}
	for _, ns := range []struct {
		name string
		list []AppServiceNamespace
	}{{"users", a.Namespaces.Users}, {"aliases", a.Namespaces.Aliases}, {"rooms", a.Namespaces.Rooms}} {
		for i, n := range ns.list {
			if n.Regex == "" {
				errs = append(errs, fmt.Errorf("namespaces.%s[%d].regex is required", ns.name, i))
			} else if _, err := regexp.Compile(n.Regex); err != nil {
				errs = append(errs, fmt.Errorf("namespaces.%s[%d].regex: %w", ns.name, i, err))
			}
		}
	}
	return errs
}

// uniqueAppServices checks that IDs and tokens identify one service each (Application
// Service API, "Registration": the homeserver MUST enforce it), and that no token is used
// both ways.
func uniqueAppServices(list []AppService) []error {
	var errs []error
	ids := map[string]string{}
	tokens := map[string]string{}
	for _, a := range list {
		if other, ok := ids[a.ID]; ok {
			errs = append(errs, fmt.Errorf("app services %s and %s have the same id %q", other, a.Path, a.ID))
		}
		ids[a.ID] = a.Path
		for _, tok := range []string{a.ASToken, a.HSToken} {
			if other, ok := tokens[tok]; ok {
				errs = append(errs, fmt.Errorf("app services %s and %s share a token (each as_token and hs_token must be unique)", other, a.Path))
			}
			tokens[tok] = a.Path
		}
	}
	return errs
}

// exclusiveOverlaps reports the exclusive namespaces of two services that provably
// overlap (see AppServiceNamespace): an expression of one matching a value the other's
// matches, the values tried being each expression itself when it is all literal, its
// literal start and, for users, each service's sender.
func exclusiveOverlaps(list []AppService, serverName string) []error {
	type excl struct {
		svc   int
		regex string
		re    *regexp.Regexp
	}
	var errs []error
	kinds := []struct {
		name string
		get  func(*AppService) []AppServiceNamespace
	}{
		{"users", func(a *AppService) []AppServiceNamespace { return a.Namespaces.Users }},
		{"aliases", func(a *AppService) []AppServiceNamespace { return a.Namespaces.Aliases }},
		{"rooms", func(a *AppService) []AppServiceNamespace { return a.Namespaces.Rooms }},
	}
	name := func(i int) string { return fmt.Sprintf("%q (%s)", list[i].ID, list[i].Path) }
	for _, k := range kinds {
		var all []excl
		for i := range list {
			for _, n := range k.get(&list[i]) {
				if !n.Exclusive {
					continue
				}
				re, err := regexp.Compile(`^(?:` + n.Regex + `)`)
				if err != nil {
					continue // reported by validate
				}
				all = append(all, excl{i, n.Regex, re})
			}
		}
		reported := map[[2]int]bool{}
		for x, a := range all {
			for _, b := range all[x+1:] {
				if a.svc == b.svc || reported[[2]int{a.svc, b.svc}] {
					continue
				}
				var witness string
				var found bool
				if a.regex == b.regex {
					witness, found = "", true
				} else {
					for _, w := range []string{example(a.re, a.regex), example(b.re, b.regex)} {
						if w != "" && a.re.MatchString(w) && b.re.MatchString(w) {
							witness, found = w, true
							break
						}
					}
				}
				if !found {
					continue
				}
				reported[[2]int{a.svc, b.svc}] = true
				if witness == "" {
					errs = append(errs, fmt.Errorf("app services %s and %s both hold the %s regex %q exclusively", name(a.svc), name(b.svc), k.name, a.regex))
				} else {
					errs = append(errs, fmt.Errorf("app services %s and %s have overlapping exclusive %s namespaces: %q and %q both match %q", name(a.svc), name(b.svc), k.name, a.regex, b.regex, witness))
				}
			}
		}
		if k.name != "users" {
			continue
		}
		for i := range list {
			sender := "@" + list[i].SenderLocalpart + ":" + serverName
			for _, e := range all {
				if e.svc != i && list[i].SenderLocalpart != "" && e.re.MatchString(sender) {
					errs = append(errs, fmt.Errorf("app service %s has its sender %s inside the exclusive users namespace %q of app service %s", name(i), sender, e.regex, name(e.svc)))
				}
			}
		}
	}
	return errs
}

// example returns the literal start of regex when re (its anchored form) matches it: a
// value surely in the namespace. Else "".
func example(re *regexp.Regexp, regex string) string {
	unanchored, err := regexp.Compile(regex)
	if err != nil {
		return ""
	}
	if prefix, _ := unanchored.LiteralPrefix(); prefix != "" && re.MatchString(prefix) {
		return prefix
	}
	return ""
}
