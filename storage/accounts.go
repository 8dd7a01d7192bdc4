package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"
)

// Account is a local user account.
type Account struct {
	UserID       string
	PasswordHash string
	IsAdmin      bool
	Deactivated  bool
	CreatedTS    int64
}

// InsertAccount creates an account and its empty profile; ErrConflict if the user exists.
func (tx *Tx) InsertAccount(ctx context.Context, a Account) error {
	_, err := tx.exec(ctx, `
		INSERT INTO accounts (user_id, password_hash, is_admin, deactivated, created_ts)
		VALUES ($1, $2, $3, FALSE, $4)`, a.UserID, a.PasswordHash, a.IsAdmin, a.CreatedTS)
	if tx.dialect.isUniqueViolation(err) {
		return ErrConflict
	} else if err != nil {
		return fmt.Errorf("insert account %s: %w", a.UserID, err)
	}
	_, err = tx.exec(ctx, `
		INSERT INTO profiles (user_id, displayname, avatar_url) VALUES ($1, $2, '')
		ON CONFLICT (user_id) DO NOTHING`, a.UserID, localpart(a.UserID))
	if err != nil {
		return fmt.Errorf("insert profile %s: %w", a.UserID, err)
	}
	return nil
}

// Account returns the account of userID, or ErrNotFound.
func (q *Q) Account(ctx context.Context, userID string) (*Account, error) {
	var a Account
	err := q.queryRow(ctx, `
		SELECT user_id, password_hash, is_admin, deactivated, created_ts
		FROM accounts WHERE user_id = $1`, userID,
	).Scan(&a.UserID, &a.PasswordHash, &a.IsAdmin, &a.Deactivated, &a.CreatedTS)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select account %s: %w", userID, err)
	}
	return &a, nil
}

// SetPassword replaces the password hash of userID. The browser sessions of the account's
// pages signed in before end (EndWebSessions).
func (tx *Tx) SetPassword(ctx context.Context, userID, hash string) error {
	_, err := tx.exec(ctx, `UPDATE accounts SET password_hash = $2, web_sessions_ts = $3 WHERE user_id = $1`, userID, hash, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("update password %s: %w", userID, err)
	}
	return nil
}

// EndWebSessions ends the browser sessions of userID's account pages (and of the OAuth 2.0
// authorization pages) signed in before now: they may no longer start sessions.
func (tx *Tx) EndWebSessions(ctx context.Context, userID string, now int64) error {
	if _, err := tx.exec(ctx, `UPDATE accounts SET web_sessions_ts = $2 WHERE user_id = $1`, userID, now); err != nil {
		return fmt.Errorf("end web sessions of %s: %w", userID, err)
	}
	return nil
}

// WebSessionsValidSince returns since when (Unix ms) userID's browser sessions are valid: a
// session signed in before is not. A deactivated or locked account has no valid session
// (math.MaxInt64). ErrNotFound: no such account.
func (q *Q) WebSessionsValidSince(ctx context.Context, userID string) (int64, error) {
	var ts int64
	err := q.queryRow(ctx, `SELECT CASE WHEN deactivated OR locked THEN $2 ELSE web_sessions_ts END FROM accounts WHERE user_id = $1`,
		userID, int64(math.MaxInt64)).Scan(&ts)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	} else if err != nil {
		return 0, fmt.Errorf("select web sessions of %s: %w", userID, err)
	}
	return ts, nil
}

// DeactivateAccount marks the account deactivated, clears its password and removes its devices.
func (tx *Tx) DeactivateAccount(ctx context.Context, userID string) error {
	tx.devicesChanged = true
	if _, err := tx.exec(ctx, `UPDATE accounts SET deactivated = TRUE, password_hash = '' WHERE user_id = $1`, userID); err != nil {
		return fmt.Errorf("deactivate %s: %w", userID, err)
	}
	if _, err := tx.exec(ctx, `DELETE FROM devices WHERE user_id = $1`, userID); err != nil {
		return fmt.Errorf("delete devices %s: %w", userID, err)
	}
	if _, err := tx.exec(ctx, `DELETE FROM puppet_tokens WHERE user_id = $1 OR admin_user_id = $1`, userID); err != nil {
		return fmt.Errorf("delete puppet tokens %s: %w", userID, err)
	}
	// Its third-party IDs go, as in Synapse (nobody resets the password through them); the
	// external (SSO) IDs stay.
	if _, err := tx.exec(ctx, `DELETE FROM user_threepids WHERE user_id = $1`, userID); err != nil {
		return fmt.Errorf("delete third-party IDs %s: %w", userID, err)
	}
	return nil
}

// CountAccounts returns how many accounts exist.
func (q *Q) CountAccounts(ctx context.Context) (int, error) {
	var n int
	err := q.queryRow(ctx, `SELECT COUNT(*) FROM accounts`).Scan(&n)
	return n, err
}

func localpart(userID string) string {
	for i := 1; i < len(userID); i++ {
		if userID[i] == ':' {
			return userID[1:i]
		}
	}
	return userID
}

// Accounts lists every account in user ID order.
func (q *Q) Accounts(ctx context.Context) ([]Account, error) {
	rows, err := q.query(ctx, `SELECT user_id, password_hash, is_admin, deactivated, created_ts FROM accounts ORDER BY user_id`)
	if err != nil {
		return nil, fmt.Errorf("select accounts: %w", err)
	}
	defer rows.Close()
	var out []Account
	for rows.Next() {
		var a Account
		if err := rows.Scan(&a.UserID, &a.PasswordHash, &a.IsAdmin, &a.Deactivated, &a.CreatedTS); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}
