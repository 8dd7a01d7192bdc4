package storage

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
)

// openIDHash is how an OpenID token is kept: only its SHA-256, so that the table does not
// hold usable tokens.
func openIDHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// InsertOpenIDToken stores an OpenID token of userID valid until expiresTS (Unix ms), and
// deletes the tokens that expired before now.
func (db *DB) InsertOpenIDToken(ctx context.Context, token, userID string, expiresTS, now int64) error {
	return db.WithTx(ctx, func(tx *Tx) error {
		if _, err := tx.exec(ctx, `DELETE FROM openid_tokens WHERE expires_ts < $1`, now); err != nil {
			return fmt.Errorf("delete expired openid tokens: %w", err)
		}
		_, err := tx.exec(ctx, `INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)`,
			openIDHash(token), userID, expiresTS)
		if err != nil {
			return fmt.Errorf("insert openid token of %s: %w", userID, err)
		}
		return nil
	})
}

// OpenIDUser returns the user an OpenID token was issued to, or ErrNotFound when the token
// is unknown or expired at now (Unix ms).
func (q *Q) OpenIDUser(ctx context.Context, token string, now int64) (string, error) {
	var userID string
	err := q.queryRow(ctx, `SELECT user_id FROM openid_tokens WHERE token_hash = $1 AND expires_ts >= $2`,
		openIDHash(token), now).Scan(&userID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	} else if err != nil {
		return "", fmt.Errorf("select openid token: %w", err)
	}
	return userID, nil
}
