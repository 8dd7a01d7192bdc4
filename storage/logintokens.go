package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// InsertLoginToken stores the hash of a new m.login.token token for userID, valid until
// expiresTS (ms), and deletes the tokens that expired before nowTS.
func (tx *Tx) InsertLoginToken(ctx context.Context, tokenHash, userID string, expiresTS, nowTS int64) error {
	if _, err := tx.exec(ctx, `DELETE FROM login_tokens WHERE expires_ts < $1`, nowTS); err != nil {
		return fmt.Errorf("delete expired login tokens: %w", err)
	}
	_, err := tx.exec(ctx, `INSERT INTO login_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)`,
		tokenHash, userID, expiresTS)
	if err != nil {
		return fmt.Errorf("insert login token of %s: %w", userID, err)
	}
	return nil
}

// ConsumeLoginToken deletes the login token with the given hash and returns its user:
// ErrNotFound when there is no such token (never issued, or used already) or it expired
// before nowTS. Deleting it is what makes it single-use, even between processes.
func (tx *Tx) ConsumeLoginToken(ctx context.Context, tokenHash string, nowTS int64) (string, error) {
	var userID string
	var expires int64
	err := tx.queryRow(ctx, `DELETE FROM login_tokens WHERE token_hash = $1 RETURNING user_id, expires_ts`, tokenHash).
		Scan(&userID, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	} else if err != nil {
		return "", fmt.Errorf("consume login token: %w", err)
	}
	if expires < nowTS {
		return "", ErrNotFound
	}
	return userID, nil
}

// AddExternalID binds an identity at a single sign-on provider to userID, keeping the
// account's other external IDs; ErrExternalIDInUse if it is bound already (to any account).
func (tx *Tx) AddExternalID(ctx context.Context, userID string, e ExternalID) error {
	_, err := tx.exec(ctx, `INSERT INTO user_external_ids (auth_provider, external_id, user_id) VALUES ($1, $2, $3)`,
		e.AuthProvider, e.ExternalID, userID)
	if tx.dialect.isUniqueViolation(err) {
		return fmt.Errorf("%w: %s %s", ErrExternalIDInUse, e.AuthProvider, e.ExternalID)
	} else if err != nil {
		return fmt.Errorf("insert external ID of %s: %w", userID, err)
	}
	return nil
}

// InsertUIASSOCompletion records that userID completed the m.login.sso stage of the
// user-interactive authentication session, until expiresTS (ms); it deletes the records that
// expired before nowTS. A session completed again is recorded for its latest user.
func (tx *Tx) InsertUIASSOCompletion(ctx context.Context, session, userID string, expiresTS, nowTS int64) error {
	if _, err := tx.exec(ctx, `DELETE FROM uia_sso_completions WHERE expires_ts < $1`, nowTS); err != nil {
		return fmt.Errorf("delete expired UIA completions: %w", err)
	}
	_, err := tx.exec(ctx, `INSERT INTO uia_sso_completions (session_id, user_id, expires_ts) VALUES ($1, $2, $3)
		ON CONFLICT (session_id) DO UPDATE SET user_id = $2, expires_ts = $3`, session, userID, expiresTS)
	if err != nil {
		return fmt.Errorf("insert UIA completion of %s: %w", userID, err)
	}
	return nil
}

// TakeUIASSOCompletion deletes the completion of session and returns its user: ErrNotFound
// when there is none or it expired before nowTS.
func (tx *Tx) TakeUIASSOCompletion(ctx context.Context, session string, nowTS int64) (string, error) {
	var userID string
	var expires int64
	err := tx.queryRow(ctx, `DELETE FROM uia_sso_completions WHERE session_id = $1 RETURNING user_id, expires_ts`, session).
		Scan(&userID, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	} else if err != nil {
		return "", fmt.Errorf("take UIA completion: %w", err)
	}
	if expires < nowTS {
		return "", ErrNotFound
	}
	return userID, nil
}
