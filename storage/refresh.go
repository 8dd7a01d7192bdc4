package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Refresh tokens (Client-Server API, "Refreshing access tokens"): a session with a refresh
// token has an access token that expires. Refreshing rotates both; the replaced refresh token
// stays usable until the new access or refresh token is used, so that a client that lost the
// answer can repeat the refresh.

// SessionTokens are the token hashes and expiries a refresh gives a device.
type SessionTokens struct {
	TokenHash        string
	TokenExpiresTS   int64 // Unix ms; 0: never
	RefreshHash      string
	RefreshExpiresTS int64 // Unix ms; 0: never
}

// SetDeviceRefresh makes the device's session refreshable: its access token (already set by
// UpsertDevice) expires at t.TokenExpiresTS and t.RefreshHash can renew it. clientID is the
// OAuth client holding the session ("" for /login and /register).
func (tx *Tx) SetDeviceRefresh(ctx context.Context, userID, deviceID, clientID string, t SessionTokens) error {
	tx.devicesChanged = true
	_, err := tx.exec(ctx, `
		UPDATE devices SET token_expires_ts = $3, refresh_token_hash = $4, prev_refresh_token_hash = NULL, refresh_salt = NULL,
			refresh_expires_ts = $5, oauth_client_id = $6
		WHERE user_id = $1 AND device_id = $2`,
		userID, deviceID, t.TokenExpiresTS, t.RefreshHash, t.RefreshExpiresTS, clientID)
	if err != nil {
		return fmt.Errorf("set refresh token of %s %s: %w", userID, deviceID, err)
	}
	return nil
}

// RefreshDevice renews the session holding the refresh token that hashes to refreshHash (its
// current one, or the one it replaced while the new tokens are unused) and returns the
// device. The new tokens are tokens(salt): using the current refresh token stores salt as
// the device's refresh salt; using the replaced one keeps the stored salt, so that tokens
// derives the same tokens again and every concurrent or repeated refresh with one token gets
// the same working answer. ErrNotFound: no session holds it, or it lapsed.
//
// One UPDATE decides whether the token is current and rotates, so that on PostgreSQL a
// concurrent refresh waits for this one and then sees the token as the replaced one.
func (tx *Tx) RefreshDevice(ctx context.Context, refreshHash string, now int64, salt string, tokens func(salt string) SessionTokens) (*Device, error) {
	tx.devicesChanged = true
	var d Device
	err := tx.queryRow(ctx, `
		UPDATE devices SET
			prev_refresh_token_hash = CASE WHEN refresh_token_hash = $1 THEN refresh_token_hash ELSE prev_refresh_token_hash END,
			superseded_refresh_token_hash = CASE WHEN refresh_token_hash = $1
				THEN COALESCE(prev_refresh_token_hash, superseded_refresh_token_hash) ELSE superseded_refresh_token_hash END,
			refresh_salt = CASE WHEN refresh_token_hash = $1 OR refresh_salt IS NULL THEN $2 ELSE refresh_salt END
		WHERE (refresh_token_hash = $1 OR prev_refresh_token_hash = $1) AND (refresh_expires_ts = 0 OR refresh_expires_ts > $3)
		RETURNING user_id, device_id, display_name, oauth_client_id, refresh_salt`, refreshHash, salt, now,
	).Scan(&d.UserID, &d.DeviceID, &d.DisplayName, &d.OAuthClientID, &salt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("rotate refresh token: %w", err)
	}
	t := tokens(salt)
	_, err = tx.exec(ctx, `
		UPDATE devices SET refresh_token_hash = $3, token_hash = $4, token_expires_ts = $5, refresh_expires_ts = $6
		WHERE user_id = $1 AND device_id = $2`,
		d.UserID, d.DeviceID, t.RefreshHash, t.TokenHash, t.TokenExpiresTS, t.RefreshExpiresTS)
	if tx.dialect.isUniqueViolation(err) {
		return nil, ErrConflict
	} else if err != nil {
		return nil, fmt.Errorf("refresh device %s %s: %w", d.UserID, d.DeviceID, err)
	}
	d.ValidUntilMS = t.TokenExpiresTS
	return &d, nil
}

// SetDeviceOAuthScope records the scope granted to an OAuth session, as the client spelled it.
func (tx *Tx) SetDeviceOAuthScope(ctx context.Context, userID, deviceID, scope string) error {
	if _, err := tx.exec(ctx, `UPDATE devices SET oauth_scope = $3 WHERE user_id = $1 AND device_id = $2`, userID, deviceID, scope); err != nil {
		return fmt.Errorf("set oauth scope of %s %s: %w", userID, deviceID, err)
	}
	return nil
}

// DeviceOAuthScope returns the scope granted to the OAuth session of the device ("" when
// none was recorded), or ErrNotFound.
func (q *Q) DeviceOAuthScope(ctx context.Context, userID, deviceID string) (string, error) {
	var scope string
	err := q.queryRow(ctx, `SELECT oauth_scope FROM devices WHERE user_id = $1 AND device_id = $2`, userID, deviceID).Scan(&scope)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	} else if err != nil {
		return "", fmt.Errorf("select oauth scope of %s %s: %w", userID, deviceID, err)
	}
	return scope, nil
}

// DeviceByRefreshToken returns the device whose current (or replaced, still usable) refresh
// token hashes to refreshHash, or ErrNotFound.
func (q *Q) DeviceByRefreshToken(ctx context.Context, refreshHash string) (*Device, error) {
	var d Device
	err := q.queryRow(ctx, `
		SELECT user_id, device_id, oauth_client_id FROM devices
		WHERE refresh_token_hash = $1 OR prev_refresh_token_hash = $1`, refreshHash,
	).Scan(&d.UserID, &d.DeviceID, &d.OAuthClientID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select device by refresh token: %w", err)
	}
	return &d, nil
}

// DeviceBySupersededRefreshToken returns the device whose latest refresh token made unusable
// by rotation hashes to refreshHash, or ErrNotFound.
func (q *Q) DeviceBySupersededRefreshToken(ctx context.Context, refreshHash string) (*Device, error) {
	var d Device
	err := q.queryRow(ctx, `SELECT user_id, device_id, oauth_client_id FROM devices WHERE superseded_refresh_token_hash = $1`, refreshHash).
		Scan(&d.UserID, &d.DeviceID, &d.OAuthClientID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select device by superseded refresh token: %w", err)
	}
	return &d, nil
}
