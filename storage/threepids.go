package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// ThreePID is a third-party identifier of an account: an e-mail address or a phone number
// (medium "email" or "msisdn"), bound by an admin.
type ThreePID struct {
	Medium      string
	Address     string
	ValidatedAt int64
	AddedAt     int64
}

// ExternalID is an account's identity at a single sign-on provider.
type ExternalID struct {
	AuthProvider string
	ExternalID   string
}

// ErrThreePIDInUse and ErrExternalIDInUse are returned by SetThreePIDs and SetExternalIDs
// when an identifier belongs to another account.
var (
	ErrThreePIDInUse   = errors.New("third-party ID bound to another account")
	ErrExternalIDInUse = errors.New("external ID bound to another account")
)

// ThreePIDs lists userID's third-party IDs, by medium and address.
func (q *Q) ThreePIDs(ctx context.Context, userID string) ([]ThreePID, error) {
	rows, err := q.query(ctx, `SELECT medium, address, validated_at, added_at FROM user_threepids
		WHERE user_id = $1 ORDER BY medium, address`, userID)
	if err != nil {
		return nil, fmt.Errorf("select third-party IDs of %s: %w", userID, err)
	}
	defer rows.Close()
	out := []ThreePID{}
	for rows.Next() {
		var t ThreePID
		if err := rows.Scan(&t.Medium, &t.Address, &t.ValidatedAt, &t.AddedAt); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// ExternalIDs lists userID's external IDs, by provider and ID.
func (q *Q) ExternalIDs(ctx context.Context, userID string) ([]ExternalID, error) {
	rows, err := q.query(ctx, `SELECT auth_provider, external_id FROM user_external_ids
		WHERE user_id = $1 ORDER BY auth_provider, external_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("select external IDs of %s: %w", userID, err)
	}
	defer rows.Close()
	out := []ExternalID{}
	for rows.Next() {
		var e ExternalID
		if err := rows.Scan(&e.AuthProvider, &e.ExternalID); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// UserByThreePID returns the account the third-party ID is bound to, or ErrNotFound.
func (q *Q) UserByThreePID(ctx context.Context, medium, address string) (string, error) {
	return q.oneUserID(ctx, `SELECT user_id FROM user_threepids WHERE medium = $1 AND address = $2`, medium, address)
}

// UserByExternalID returns the account the provider's external ID maps to, or ErrNotFound.
func (q *Q) UserByExternalID(ctx context.Context, provider, externalID string) (string, error) {
	return q.oneUserID(ctx, `SELECT user_id FROM user_external_ids WHERE auth_provider = $1 AND external_id = $2`, provider, externalID)
}

func (q *Q) oneUserID(ctx context.Context, query string, args ...any) (string, error) {
	var userID string
	err := q.queryRow(ctx, query, args...).Scan(&userID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	} else if err != nil {
		return "", fmt.Errorf("select user by identifier: %w", err)
	}
	return userID, nil
}

// SetThreePIDs replaces userID's third-party IDs with list (addresses already canonical,
// no duplicates). Those the account keeps keep their added_at and validated_at; new ones are
// added and validated at now. ErrThreePIDInUse if one is bound to another account.
func (tx *Tx) SetThreePIDs(ctx context.Context, userID string, list []ThreePID, now int64) error {
	for _, t := range list {
		owner, err := tx.UserByThreePID(ctx, t.Medium, t.Address)
		if err == nil && owner != userID {
			return fmt.Errorf("%w: %s %s", ErrThreePIDInUse, t.Medium, t.Address)
		} else if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	old, err := tx.ThreePIDs(ctx, userID)
	if err != nil {
		return err
	}
	kept := map[[2]string]ThreePID{}
	for _, t := range old {
		kept[[2]string{t.Medium, t.Address}] = t
	}
	if _, err := tx.exec(ctx, `DELETE FROM user_threepids WHERE user_id = $1`, userID); err != nil {
		return fmt.Errorf("delete third-party IDs of %s: %w", userID, err)
	}
	for _, t := range list {
		if o, ok := kept[[2]string{t.Medium, t.Address}]; ok {
			t.AddedAt, t.ValidatedAt = o.AddedAt, o.ValidatedAt
		} else {
			t.AddedAt, t.ValidatedAt = now, now
		}
		_, err := tx.exec(ctx, `INSERT INTO user_threepids (medium, address, user_id, validated_at, added_at)
			VALUES ($1, $2, $3, $4, $5)`, t.Medium, t.Address, userID, t.ValidatedAt, t.AddedAt)
		if tx.dialect.isUniqueViolation(err) {
			return fmt.Errorf("%w: %s %s", ErrThreePIDInUse, t.Medium, t.Address)
		} else if err != nil {
			return fmt.Errorf("insert third-party ID of %s: %w", userID, err)
		}
	}
	return nil
}

// SetExternalIDs replaces userID's external IDs with list (no duplicates).
// ErrExternalIDInUse if one maps to another account.
func (tx *Tx) SetExternalIDs(ctx context.Context, userID string, list []ExternalID) error {
	for _, e := range list {
		owner, err := tx.UserByExternalID(ctx, e.AuthProvider, e.ExternalID)
		if err == nil && owner != userID {
			return fmt.Errorf("%w: %s %s", ErrExternalIDInUse, e.AuthProvider, e.ExternalID)
		} else if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	if _, err := tx.exec(ctx, `DELETE FROM user_external_ids WHERE user_id = $1`, userID); err != nil {
		return fmt.Errorf("delete external IDs of %s: %w", userID, err)
	}
	for _, e := range list {
		_, err := tx.exec(ctx, `INSERT INTO user_external_ids (auth_provider, external_id, user_id) VALUES ($1, $2, $3)`,
			e.AuthProvider, e.ExternalID, userID)
		if tx.dialect.isUniqueViolation(err) {
			return fmt.Errorf("%w: %s %s", ErrExternalIDInUse, e.AuthProvider, e.ExternalID)
		} else if err != nil {
			return fmt.Errorf("insert external ID of %s: %w", userID, err)
		}
	}
	return nil
}

// CanonicalThreePID checks a third-party ID and returns its address as stored and looked up:
// an e-mail address trimmed and in lower case (one "@" with text on both sides), a phone
// number (msisdn) trimmed. Other media are refused.
func CanonicalThreePID(medium, address string) (string, error) {
	address = strings.TrimSpace(address)
	switch medium {
	case "email":
		local, domain, ok := strings.Cut(address, "@")
		if !ok || local == "" || domain == "" || strings.Contains(domain, "@") {
			return "", errors.New("unable to parse email address")
		}
		return strings.ToLower(address), nil
	case "msisdn":
		if address == "" {
			return "", errors.New("empty phone number")
		}
		return address, nil
	}
	return "", errors.New("medium must be email or msisdn")
}
