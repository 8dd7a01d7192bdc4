package roomserver

import (
	"context"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// DeactivateAccount deactivates the local account userID, for the user's own
// POST /account/deactivate and for the admin API: the user leaves every room they are in,
// rejects their invites and withdraws their knocks; then, in one transaction, the account is
// marked deactivated with no password, and its devices, access tokens, pushers and end-to-end
// keys go. With erase, the profile is wiped and the account marked erased. It returns the
// device_lists position of the change (0: none) for the caller to announce after the commit.
func (s *Server) DeactivateAccount(ctx context.Context, userID string, erase bool) (int64, error) {
	ms, err := s.db.UserMemberships(ctx, userID, "")
	if err != nil {
		return 0, err
	}
	for _, m := range ms {
		if m.Membership == spec.Join || m.Membership == spec.Invite || m.Membership == spec.Knock {
			if err := s.Leave(ctx, userID, m.RoomID, ""); err != nil {
				s.log.Warn("deactivation could not leave room", "user_id", userID, "room_id", m.RoomID, "err", err)
			}
		}
	}
	var pos int64
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.DeleteDevices(ctx, userID); err != nil {
			return err
		}
		if err := tx.DeactivateAccount(ctx, userID); err != nil {
			return err
		}
		if erase {
			if err := tx.SetProfile(ctx, userID, storage.Profile{}); err != nil {
				return err
			}
			if err := tx.SetAccountFlag(ctx, userID, storage.FlagErased, true); err != nil {
				return err
			}
		}
		var err error
		pos, err = tx.DeleteDeviceE2EE(ctx, userID)
		return err
	})
	return pos, err
}
