package federationapi

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/matrix-org/gomatrix"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// remoteProfileTTL is how long another server's answer about a user's profile is reused:
// clients ask for the profiles of every member they show, and a profile change reaches
// rooms as a member event anyway.
const remoteProfileTTL = 5 * time.Minute

// RemoteProfiles looks up other servers' users' profiles for the client API, with a short
// cache (clientapi.RemoteProfiles).
type RemoteProfiles struct {
	s     *Server
	mu    sync.Mutex
	cache map[string]cachedProfile
}

type cachedProfile struct {
	name, avatar string
	err          error
	expires      time.Time
}

// RemoteProfiles returns the lookup of other servers' users' profiles.
func (s *Server) RemoteProfiles() *RemoteProfiles {
	return &RemoteProfiles{s: s, cache: map[string]cachedProfile{}}
}

// QueryProfile asks the user's server (GET /query/profile). An unknown user is M_NOT_FOUND;
// a server that cannot be reached, or answers otherwise, 502 M_UNKNOWN (unreachable).
func (p *RemoteProfiles) QueryProfile(ctx context.Context, userID string) (string, string, error) {
	uid, err := spec.NewUserID(userID, true)
	if err != nil {
		return "", "", spec.InvalidParam("invalid user ID")
	}
	now := p.s.cfg.Now()
	p.mu.Lock()
	if c, ok := p.cache[userID]; ok && now.Before(c.expires) {
		p.mu.Unlock()
		return c.name, c.avatar, c.err
	}
	p.mu.Unlock()
	res, err := p.s.client.QueryProfile(ctx, uid.Domain(), userID)
	var he gomatrix.HTTPError
	if err != nil && errors.As(err, &he) && he.Code == http.StatusNotFound {
		err = spec.NotFound("profile not found")
	} else if err != nil {
		return "", "", p.s.unreachable(uid.Domain(), "profile query", err) // not cached: the server may be back soon
	}
	p.mu.Lock()
	if len(p.cache) > 10000 {
		p.cache = map[string]cachedProfile{}
	}
	p.cache[userID] = cachedProfile{name: res.DisplayName, avatar: res.AvatarURL, err: err, expires: now.Add(remoteProfileTTL)}
	p.mu.Unlock()
	return res.DisplayName, res.AvatarURL, err
}
