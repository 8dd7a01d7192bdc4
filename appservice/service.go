// Package appservice implements the Application Service API (bridges and bots): the
// registrations loaded from app_service_config_files, the as_token authentication of the
// Client-Server API (identity assertion with user_id and device_id), the exclusive
// namespaces, the per-service transaction queue pushed to each service, pings, and the user,
// alias and third-party queries asked of services.
//
// It sits beside the HTTP surfaces: clientapi calls it; it calls roomserver and storage and
// must not import clientapi, syncapi, federationapi, adminapi or mediaapi.
package appservice

import (
	"crypto/subtle"
	"regexp"
	"slices"

	"github.com/lattice-chat/lattice/internal/config"
)

// Service is one registered application service.
type Service struct {
	config.AppService
	// SenderID is the service's own user, @sender_localpart:server_name.
	SenderID string

	users, aliases, rooms []namespace
}

type namespace struct {
	re        *regexp.Regexp
	exclusive bool
}

// HasURL reports whether the service takes requests (url is neither null nor empty).
func (s *Service) HasURL() bool { return s.URL != nil && *s.URL != "" }

// match returns whether value is in one of the namespaces, and whether that namespace is
// exclusive (the first exclusive match wins).
func match(list []namespace, value string) (in, exclusive bool) {
	for _, n := range list {
		if n.re.MatchString(value) {
			in = true
			if n.exclusive {
				return true, true
			}
		}
	}
	return in, false
}

// OwnsUser reports whether userID is the service's sender or in its users namespaces.
func (s *Service) OwnsUser(userID string) bool {
	if userID == s.SenderID {
		return true
	}
	in, _ := match(s.users, userID)
	return in
}

// InAliases reports whether alias is in the service's aliases namespaces.
func (s *Service) InAliases(alias string) bool {
	in, _ := match(s.aliases, alias)
	return in
}

// InRooms reports whether roomID is in the service's rooms namespaces.
func (s *Service) InRooms(roomID string) bool {
	in, _ := match(s.rooms, roomID)
	return in
}

// Registry holds the registered services; it never changes after New.
type Registry struct {
	list []*Service
	byID map[string]*Service
}

// NewRegistry compiles the registrations of the configuration.
func NewRegistry(cfg *config.Config) *Registry {
	r := &Registry{byID: map[string]*Service{}}
	for _, as := range cfg.AppServices {
		s := &Service{AppService: as, SenderID: "@" + as.SenderLocalpart + ":" + cfg.ServerName}
		s.users = compile(as.Namespaces.Users)
		s.aliases = compile(as.Namespaces.Aliases)
		s.rooms = compile(as.Namespaces.Rooms)
		r.list = append(r.list, s)
		r.byID[s.ID] = s
	}
	return r
}

// compile anchors each expression at the start, as Synapse matches them (config.Load
// checked that they compile).
func compile(list []config.AppServiceNamespace) []namespace {
	out := make([]namespace, 0, len(list))
	for _, n := range list {
		out = append(out, namespace{re: regexp.MustCompile(`^(?:` + n.Regex + `)`), exclusive: n.Exclusive})
	}
	return out
}

// Services returns every registered service.
func (r *Registry) Services() []*Service { return r.list }

// ByID returns the service with the given id, or nil.
func (r *Registry) ByID(id string) *Service { return r.byID[id] }

// ByToken returns the service whose as_token is token, or nil. Every service's token is
// compared, in constant time, so the answer's timing says nothing about the tokens.
func (r *Registry) ByToken(token string) *Service {
	var found *Service
	for _, s := range r.list {
		if subtle.ConstantTimeCompare([]byte(s.ASToken), []byte(token)) == 1 {
			found = s
		}
	}
	return found
}

// ExclusiveUser returns the service holding userID in an exclusive users namespace (or as
// its sender), or nil.
func (r *Registry) ExclusiveUser(userID string) *Service {
	for _, s := range r.list {
		if userID == s.SenderID {
			return s
		}
		if _, ex := match(s.users, userID); ex {
			return s
		}
	}
	return nil
}

// MayUseUser reports whether svc may create, log in or act as userID: the user is its
// sender or in its users namespaces, and no other service holds it exclusively.
func (r *Registry) MayUseUser(svc *Service, userID string) bool {
	if !svc.OwnsUser(userID) {
		return false
	}
	owner := r.ExclusiveUser(userID)
	return owner == nil || owner == svc
}

// ExclusiveAlias returns the service holding alias in an exclusive aliases namespace, or nil.
func (r *Registry) ExclusiveAlias(alias string) *Service {
	for _, s := range r.list {
		if _, ex := match(s.aliases, alias); ex {
			return s
		}
	}
	return nil
}

// UserQueried returns the services with a URL whose users namespaces hold userID: those
// the homeserver asks about an unknown user.
func (r *Registry) UserQueried(userID string) []*Service {
	var out []*Service
	for _, s := range r.list {
		if in, _ := match(s.users, userID); in && s.HasURL() {
			out = append(out, s)
		}
	}
	return out
}

// AliasQueried returns the services with a URL whose aliases namespaces hold alias.
func (r *Registry) AliasQueried(alias string) []*Service {
	var out []*Service
	for _, s := range r.list {
		if s.InAliases(alias) && s.HasURL() {
			out = append(out, s)
		}
	}
	return out
}

// ForProtocol returns the services with a URL declaring the third-party protocol.
func (r *Registry) ForProtocol(protocol string) []*Service {
	var out []*Service
	for _, s := range r.list {
		if s.HasURL() && slices.Contains(s.Protocols, protocol) {
			out = append(out, s)
		}
	}
	return out
}
