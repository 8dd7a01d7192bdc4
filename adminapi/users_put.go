package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/password"
	"github.com/lattice-chat/lattice/storage"
)

// putUserRequest is the body of PUT /v2/users/{userId}: every field is optional, and an
// absent one leaves the account as it is.
type putUserRequest struct {
	Password      *string              `json:"password"`
	LogoutDevices *bool                `json:"logout_devices"`
	DisplayName   *string              `json:"displayname"`
	AvatarURL     *string              `json:"avatar_url"`
	Admin         *bool                `json:"admin"`
	Deactivated   *bool                `json:"deactivated"`
	Locked        *bool                `json:"locked"`
	UserType      json.RawMessage      `json:"user_type"`    // absent: unchanged; null: cleared
	ThreePIDs     *[]threePIDRequest   `json:"threepids"`    // absent or null: unchanged
	ExternalIDs   *[]externalIDRequest `json:"external_ids"` // absent or null: unchanged

	ids idLists // the two lists checked (check)
}

// userType reads user_type: set says whether it was given, t is nil for null.
func (req *putUserRequest) userType() (t *string, set bool, err error) {
	if len(req.UserType) == 0 {
		return nil, false, nil
	}
	if string(req.UserType) == "null" {
		return nil, true, nil
	}
	var v string
	if json.Unmarshal(req.UserType, &v) != nil || (v != "bot" && v != "support") {
		return nil, false, spec.InvalidParam("user_type must be null, bot or support")
	}
	return &v, true, nil
}

func (req *putUserRequest) check() error {
	var err error
	if req.ids, err = checkIDs(req.ThreePIDs, req.ExternalIDs); err != nil {
		return err
	}
	if req.AvatarURL != nil && *req.AvatarURL != "" && !strings.HasPrefix(*req.AvatarURL, "mxc://") {
		return spec.InvalidParam("avatar_url must be an mxc:// URI")
	}
	if req.Deactivated != nil && *req.Deactivated && req.Locked != nil && *req.Locked {
		return spec.InvalidParam("an account cannot be both deactivated and locked")
	}
	if req.DisplayName != nil && len(*req.DisplayName) > 256 {
		return spec.InvalidParam("displayname is too long")
	}
	_, _, err = req.userType()
	return err
}

// handlePutUser handles PUT /v2/users/{userId}: creates the account (201) or changes it (200).
func (s *Server) handlePutUser(r *http.Request) (any, error) {
	userID, err := s.localUserID(r)
	if err != nil {
		return nil, err
	}
	var req putUserRequest
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := req.check(); err != nil {
		return nil, err
	}
	if err := s.checkIDsFree(r.Context(), userID, req.ids); err != nil {
		return nil, err
	}
	_, err = s.db.Account(r.Context(), userID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		if err := s.createUser(r, userID, &req); err != nil {
			return nil, err
		}
		u, err := s.db.User(r.Context(), userID)
		if err != nil {
			return nil, err
		}
		body, err := s.userDetails(r.Context(), u)
		if err != nil {
			return nil, err
		}
		return httputil.Response{Status: http.StatusCreated, Body: body}, nil
	case err != nil:
		return nil, err
	}
	if err := s.modifyUser(r, userID, &req); err != nil {
		return nil, err
	}
	u, err := s.db.User(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	return s.userDetails(r.Context(), u)
}

// createUser creates userID with what req gives; a missing password leaves an account that
// cannot log in with one.
func (s *Server) createUser(r *http.Request, userID string, req *putUserRequest) error {
	ctx := r.Context()
	if !validLocalpart(strings.TrimPrefix(strings.TrimSuffix(userID, ":"+s.cfg.ServerName), "@")) {
		return spec.InvalidUsername("user names may contain only a-z, 0-9, . _ = - / +")
	}
	hash := ""
	if req.Password != nil {
		var err error
		if hash, err = password.Hash(*req.Password, s.cfg.Registration.MinPasswordLength); err != nil {
			return err
		}
	}
	userType, _, _ := req.userType()
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		acct := storage.Account{UserID: userID, PasswordHash: hash, IsAdmin: req.Admin != nil && *req.Admin, CreatedTS: time.Now().UnixMilli()}
		if err := tx.InsertAccount(ctx, acct); err != nil {
			return err
		}
		if req.DisplayName != nil || req.AvatarURL != nil {
			p, err := tx.Profile(ctx, userID)
			if err != nil {
				return err
			}
			if req.DisplayName != nil {
				p.DisplayName = *req.DisplayName
			}
			if req.AvatarURL != nil {
				p.AvatarURL = *req.AvatarURL
			}
			if err := tx.SetProfile(ctx, userID, *p); err != nil {
				return err
			}
		}
		if req.Locked != nil && *req.Locked {
			if err := tx.SetAccountFlag(ctx, userID, storage.FlagLocked, true); err != nil {
				return err
			}
		}
		if err := setIDs(ctx, tx, userID, req.ids); err != nil {
			return err
		}
		return tx.SetUserType(ctx, userID, userType)
	})
	if errors.Is(err, storage.ErrConflict) {
		return spec.UserInUse("user ID already taken")
	} else if err != nil {
		return err
	}
	s.audit(r, "create user", "user_id", userID, "admin", req.Admin != nil && *req.Admin)
	return nil
}

// modifyUser applies req to the existing account userID, in the order Synapse does:
// password, profile, admin flag, (de)activation, lock, user type.
func (s *Server) modifyUser(r *http.Request, userID string, req *putUserRequest) error {
	ctx := r.Context()
	me := httputil.Device(ctx).UserID
	acct, err := s.db.Account(ctx, userID)
	if err != nil {
		return err
	}
	if req.Admin != nil && !*req.Admin && userID == me {
		return spec.InvalidParam("you may not demote yourself")
	}
	reactivate := req.Deactivated != nil && !*req.Deactivated && acct.Deactivated
	if reactivate && (req.Password == nil || *req.Password == "") {
		return spec.InvalidParam("a password is needed to reactivate an account")
	}
	if req.Password != nil && !(req.Deactivated != nil && *req.Deactivated) {
		logout := req.LogoutDevices == nil || *req.LogoutDevices
		if err := s.setPassword(ctx, userID, *req.Password, logout && !reactivate); err != nil {
			return err
		}
		s.audit(r, "set password", "user_id", userID, "logout_devices", logout)
	}
	if err := s.updateProfile(ctx, userID, req.DisplayName, req.AvatarURL); err != nil {
		return err
	}
	userType, setType, _ := req.userType()
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		if req.Admin != nil {
			if err := tx.SetAccountFlag(ctx, userID, storage.FlagAdmin, *req.Admin); err != nil {
				return err
			}
		}
		if reactivate {
			if err := tx.SetAccountFlag(ctx, userID, storage.FlagDeactivated, false); err != nil {
				return err
			}
			if err := tx.SetAccountFlag(ctx, userID, storage.FlagErased, false); err != nil {
				return err
			}
		}
		if req.Locked != nil {
			if err := tx.SetAccountFlag(ctx, userID, storage.FlagLocked, *req.Locked); err != nil {
				return err
			}
		}
		if err := setIDs(ctx, tx, userID, req.ids); err != nil {
			return err
		}
		if setType {
			return tx.SetUserType(ctx, userID, userType)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if req.Deactivated != nil && *req.Deactivated && !acct.Deactivated {
		if err := s.deactivate(ctx, userID, false); err != nil {
			return err
		}
	}
	s.audit(r, "modify user", "user_id", userID, "admin", given(req.Admin), "deactivated", given(req.Deactivated),
		"locked", given(req.Locked), "profile", req.DisplayName != nil || req.AvatarURL != nil,
		"threepids", req.ids.threePIDs != nil, "external_ids", req.ids.externalIDs != nil)
	return nil
}

// updateProfile sets the given profile fields and updates the user's membership events.
func (s *Server) updateProfile(ctx context.Context, userID string, displayName, avatarURL *string) error {
	if displayName == nil && avatarURL == nil {
		return nil
	}
	p, err := s.db.Profile(ctx, userID)
	if err != nil {
		return err
	}
	if displayName != nil {
		p.DisplayName = *displayName
	}
	if avatarURL != nil {
		p.AvatarURL = *avatarURL
	}
	if err := s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.SetProfile(ctx, userID, *p) }); err != nil {
		return err
	}
	return s.rooms.UpdateProfile(ctx, userID)
}

// setPassword gives userID a new password and, with logout, logs all their devices out.
func (s *Server) setPassword(ctx context.Context, userID, pw string, logout bool) error {
	hash, err := password.Hash(pw, s.cfg.Registration.MinPasswordLength)
	if err != nil {
		return err
	}
	var pos int64
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.SetPassword(ctx, userID, hash); err != nil {
			return err
		}
		if !logout {
			return nil
		}
		if err := tx.DeleteDevices(ctx, userID); err != nil {
			return err
		}
		pos, err = tx.DeleteDeviceE2EE(ctx, userID)
		return err
	})
	if err != nil {
		return err
	}
	s.deviceListChanged(ctx, userID, pos)
	return nil
}

// deactivate deactivates userID as the user's own /account/deactivate does.
func (s *Server) deactivate(ctx context.Context, userID string, erase bool) error {
	pos, err := s.rooms.DeactivateAccount(ctx, userID, erase)
	if err != nil {
		return err
	}
	s.deviceListChanged(ctx, userID, pos)
	return nil
}

// deviceListChanged wakes the long-polls of userID and of the users sharing a room with them
// when the device_lists stream moved to pos (0: it did not), and tells other servers about
// the named devices (none named: all of them).
func (s *Server) deviceListChanged(ctx context.Context, userID string, pos int64, deviceIDs ...string) {
	if pos == 0 {
		return
	}
	if s.waker != nil {
		users, err := s.db.UsersSharingRooms(ctx, userID)
		if err != nil {
			s.log.Error("device list change: cannot list users to wake", "user_id", userID, "err", err)
		}
		s.waker.Wake(storage.StreamDeviceLists, pos, append(users, userID))
	}
	if s.deviceLists != nil {
		s.deviceLists.DeviceListChanged(ctx, userID, deviceIDs)
	}
}

// given is *b for the audit log, or "unchanged".
func given(b *bool) any {
	if b == nil {
		return "unchanged"
	}
	return *b
}
