package sso

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lattice-chat/lattice/storage"
)

// maxLocalpartTries bounds the search for a free localpart (alice, alice1, ... alice999).
const maxLocalpartTries = 1000

// resolveUser returns the account linked to (provider, subject), linking or creating one on
// the identity's first sign-in.
func (s *Service) resolveUser(ctx context.Context, p *provider, subject string, claims map[string]any) (string, error) {
	for attempt := 0; ; attempt++ {
		userID, err := s.db.UserByExternalID(ctx, p.cfg.ID, subject)
		if err == nil {
			return userID, s.checkActive(ctx, userID)
		} else if !errors.Is(err, storage.ErrNotFound) {
			return "", err
		}
		userID, err = s.provision(ctx, p, subject, claims)
		if errors.Is(err, storage.ErrExternalIDInUse) && attempt == 0 {
			continue // a concurrent first sign-in of the same identity linked it: use its account
		}
		return userID, err
	}
}

// checkActive refuses a deactivated account.
func (s *Service) checkActive(ctx context.Context, userID string) error {
	acc, err := s.db.Account(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return refused(http.StatusForbidden, "Sign-in refused", "The account linked to this identity no longer exists.")
	} else if err != nil {
		return err
	}
	if acc.Deactivated {
		return refused(http.StatusForbidden, "Sign-in refused", "The account %s is deactivated.", userID)
	}
	return nil
}

// checkLinkable refuses to link an existing account to a new identity of p when the account
// is a server admin (an identity whose name a user can influence must not become an admin),
// or is linked to another identity of p already (a second identity claiming the same name).
func checkLinkable(ctx context.Context, tx *storage.Tx, p *provider, acc *storage.Account) error {
	if acc.IsAdmin {
		return refused(http.StatusForbidden, "Sign-in refused",
			"The account %s exists and is a server administrator's: it cannot be linked to a %s identity by signing in. Ask an administrator to link it.", acc.UserID, p.cfg.Name)
	}
	ids, err := tx.ExternalIDs(ctx, acc.UserID)
	if err != nil {
		return err
	}
	for _, e := range ids {
		if e.AuthProvider == p.cfg.ID {
			return refused(http.StatusForbidden, "Sign-in refused",
				"The account %s is linked to another %s identity already.", acc.UserID, p.cfg.Name)
		}
	}
	return nil
}

// provision links the identity to the existing account of its localpart (with
// allow_existing_users) or to a new account at the first free localpart.
func (s *Service) provision(ctx context.Context, p *provider, subject string, claims map[string]any) (string, error) {
	localpart := mapLocalpart(claimString(claims, p.cfg.LocalpartClaim))
	displayName := strings.TrimSpace(claimString(claims, p.cfg.DisplayNameClaim))
	if len(displayName) > 256 || !utf8.ValidString(displayName) {
		displayName = ""
	}
	ext := storage.ExternalID{AuthProvider: p.cfg.ID, ExternalID: subject}
	if userID := "@" + localpart + ":" + s.cfg.ServerName; p.cfg.AllowExistingUsers && !s.isReserved(userID) {
		if acc, err := s.db.Account(ctx, userID); err == nil {
			if err := s.checkActive(ctx, userID); err != nil {
				return "", err
			}
			err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
				if err := checkLinkable(ctx, tx, p, acc); err != nil {
					return err
				}
				return tx.AddExternalID(ctx, userID, ext)
			})
			if err == nil {
				s.log.Info("sso identity linked to an existing account", "user_id", userID, "idp", p.cfg.ID)
			}
			return userID, err
		} else if !errors.Is(err, storage.ErrNotFound) {
			return "", err
		}
	}
	for i := 0; i < maxLocalpartTries; i++ {
		candidate := localpart
		if i > 0 {
			candidate += strconv.Itoa(i)
		}
		userID := "@" + candidate + ":" + s.cfg.ServerName
		if s.isReserved(userID) {
			continue
		}
		err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
			if err := tx.InsertAccount(ctx, storage.Account{UserID: userID, CreatedTS: time.Now().UnixMilli()}); err != nil {
				return err
			}
			if displayName != "" {
				if err := tx.SetProfile(ctx, userID, storage.Profile{DisplayName: displayName}); err != nil {
					return err
				}
			}
			return tx.AddExternalID(ctx, userID, ext)
		})
		if errors.Is(err, storage.ErrConflict) {
			continue // taken: try the next digits
		} else if err != nil {
			return "", err
		}
		s.log.Info("sso account created", "user_id", userID, "idp", p.cfg.ID)
		return userID, nil
	}
	return "", refused(http.StatusForbidden, "Sign-in refused", "No free user name was found for %q.", localpart)
}
