package clientapi

import (
	"context"
	"errors"
	"net/http"
	"regexp"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// RemoteProfiles looks up the profiles of other servers' users (GET /query/profile);
// federationapi implements it.
type RemoteProfiles interface {
	QueryProfile(ctx context.Context, userID string) (displayName, avatarURL string, err error)
}

// SetRemoteProfiles makes GET /profile ask other servers for their users' profiles.
func (s *Server) SetRemoteProfiles(rp RemoteProfiles) { s.remoteProfiles = rp }

func (s *Server) profile(r *http.Request) (*storage.Profile, error) {
	userID := httputil.PathVar(r, "userId")
	uid, err := spec.NewUserID(userID, true)
	if err != nil {
		return nil, spec.InvalidParam("invalid user ID")
	}
	if string(uid.Domain()) != s.cfg.ServerName && s.remoteProfiles != nil {
		name, avatar, err := s.remoteProfiles.QueryProfile(r.Context(), userID)
		if err != nil {
			return nil, err // M_NOT_FOUND, or 502 when the server could not be reached
		}
		return &storage.Profile{DisplayName: name, AvatarURL: avatar}, nil
	}
	p, err := s.db.Profile(r.Context(), userID)
	if errors.Is(err, storage.ErrNotFound) && s.askServiceForUser(r.Context(), userID) {
		p, err = s.db.Profile(r.Context(), userID)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("profile not found")
	}
	return p, err
}

func profileJSON(p *storage.Profile) map[string]any {
	out := map[string]any{}
	if p.DisplayName != "" {
		out["displayname"] = p.DisplayName
	}
	if p.AvatarURL != "" {
		out["avatar_url"] = p.AvatarURL
	}
	return out
}

// handleProfile handles GET /profile/{userId}.
func (s *Server) handleProfile(r *http.Request) (any, error) {
	p, err := s.profile(r)
	if err != nil {
		return nil, err
	}
	return profileJSON(p), nil
}

// handleProfileField handles GET /profile/{userId}/{displayname|avatar_url}.
func (s *Server) handleProfileField(r *http.Request) (any, error) {
	p, err := s.profile(r)
	if err != nil {
		return nil, err
	}
	field := httputil.PathVar(r, "field")
	v, ok := profileJSON(p)[field]
	if !ok {
		return nil, spec.NotFound("profile field not set")
	}
	return map[string]any{field: v}, nil
}

// handleSetProfileField handles PUT /profile/{userId}/{displayname|avatar_url}; the change is
// sent as a new member event into every joined room.
func (s *Server) handleSetProfileField(r *http.Request) (any, error) {
	dev := httputil.Device(r.Context())
	userID := httputil.PathVar(r, "userId")
	if userID != dev.UserID {
		return nil, spec.Forbidden("you can only change your own profile")
	}
	if err := notSuspended(r); err != nil {
		return nil, err
	}
	field := httputil.PathVar(r, "field")
	if field != "displayname" && field != "avatar_url" {
		return nil, spec.Forbidden("only displayname and avatar_url can be set")
	}
	var body map[string]any
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	value, ok := body[field].(string)
	if _, present := body[field]; present && !ok && body[field] != nil {
		return nil, spec.BadJSON(field + " must be a string")
	}
	if len(value) > 256 && field == "displayname" {
		return nil, spec.BadJSON("displayname is too long")
	}
	p, err := s.db.Profile(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	if field == "displayname" {
		p.DisplayName = value
	} else {
		p.AvatarURL = value
	}
	if err := s.db.WithTx(r.Context(), func(tx *storage.Tx) error { return tx.SetProfile(r.Context(), userID, *p) }); err != nil {
		return nil, err
	}
	if err := s.rooms.UpdateProfile(r.Context(), userID); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// profileKey is the grammar of a profile field name (profile.yaml's keyName pattern).
var profileKey = regexp.MustCompile(`^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$`)

// handleDeleteProfileField handles DELETE /profile/{userId}/{keyName} (v1.16). Only
// displayname and avatar_url are stored (the m.profile_fields capability says so), so
// deleting any other valid key deletes nothing and succeeds, as for a field that is not set.
func (s *Server) handleDeleteProfileField(r *http.Request) (any, error) {
	dev := httputil.Device(r.Context())
	userID := httputil.PathVar(r, "userId")
	if userID != dev.UserID {
		return nil, spec.Forbidden("you can only change your own profile")
	}
	if err := notSuspended(r); err != nil {
		return nil, err
	}
	field := httputil.PathVar(r, "field")
	if !profileKey.MatchString(field) {
		return nil, spec.InvalidParam("invalid profile key")
	}
	if field != "displayname" && field != "avatar_url" {
		return struct{}{}, nil
	}
	p, err := s.db.Profile(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	if (field == "displayname" && p.DisplayName == "") || (field == "avatar_url" && p.AvatarURL == "") {
		return struct{}{}, nil
	}
	if field == "displayname" {
		p.DisplayName = ""
	} else {
		p.AvatarURL = ""
	}
	if err := s.db.WithTx(r.Context(), func(tx *storage.Tx) error { return tx.SetProfile(r.Context(), userID, *p) }); err != nil {
		return nil, err
	}
	if err := s.rooms.UpdateProfile(r.Context(), userID); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}
