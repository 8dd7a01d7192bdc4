package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Device is a logged-in device with its access token (stored hashed).
type Device struct {
	UserID      string
	DeviceID    string
	DisplayName string
	CreatedTS   int64
	LastSeenTS  int64
	LastSeenIP  string
	// LastSeenUserAgent is the User-Agent of the latest request recorded (DeviceSeen); not
	// filled by DeviceByToken.
	LastSeenUserAgent string

	// Filled by DeviceByToken only: the account's flags, so that every authenticated request
	// knows them without another query, and whether the token is an admin's puppet token
	// (PuppetToken), with its expiry.
	Locked       bool
	Suspended    bool
	ShadowBanned bool
	Puppet       bool
	ValidUntilMS int64
	// OAuthClientID is the OAuth client holding the session ("" for /login); filled by
	// DeviceByToken and DeviceByRefreshToken.
	OAuthClientID string

	// prevRefresh: the session still accepts the refresh token it replaced, until its new
	// access token is used (DeviceByToken then drops the old one).
	prevRefresh bool
}

// ErrTokenExpired is DeviceByToken's answer for a device's access token past its expiry: the
// session lives on and its refresh token can get a new one (soft logout).
var ErrTokenExpired = errors.New("access token expired")

const deviceColumns = `user_id, device_id, display_name, created_ts, last_seen_ts, last_seen_ip, last_seen_user_agent`

func scanDevice(row interface{ Scan(...any) error }) (*Device, error) {
	var d Device
	err := row.Scan(&d.UserID, &d.DeviceID, &d.DisplayName, &d.CreatedTS, &d.LastSeenTS, &d.LastSeenIP, &d.LastSeenUserAgent)
	return &d, err
}

// DeviceByToken returns the device whose token hashes to tokenHash, or ErrNotFound. Every
// authenticated request needs one, so lookups are cached (readCache) until a transaction of
// any process writes devices: a logged-out token is refused at once.
func (db *DB) DeviceByToken(ctx context.Context, tokenHash string) (*Device, error) {
	cached, ok, gen, err := db.tokens.get(ctx, &db.Q, tokenHash)
	if err != nil {
		return nil, err
	} else if ok {
		return unexpired(&cached)
	}
	d, err := db.Q.DeviceByToken(ctx, tokenHash)
	if errors.Is(err, ErrNotFound) {
		d, err = db.Q.puppetByToken(ctx, tokenHash)
	}
	if err != nil {
		return nil, err
	}
	db.tokens.put(tokenHash, *d, gen)
	if d.prevRefresh && d.ValidUntilMS > time.Now().UnixMilli() {
		// The new access token is in use: the refresh token it replaced is revoked.
		err := db.WithTx(ctx, func(tx *Tx) error {
			tx.devicesChanged = true
			_, err := tx.exec(ctx, `UPDATE devices SET superseded_refresh_token_hash = prev_refresh_token_hash, prev_refresh_token_hash = NULL
				WHERE token_hash = $1 AND prev_refresh_token_hash IS NOT NULL`, tokenHash)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("drop previous refresh token: %w", err)
		}
		d.prevRefresh = false
	}
	return unexpired(d)
}

// unexpired returns d, or ErrNotFound when d is a puppet token past its expiry, or
// ErrTokenExpired when d's own access token expired.
func unexpired(d *Device) (*Device, error) {
	if d.ValidUntilMS > 0 && time.Now().UnixMilli() >= d.ValidUntilMS {
		if d.Puppet {
			return nil, ErrNotFound
		}
		return nil, ErrTokenExpired
	}
	return d, nil
}

// UpsertDevice creates the device or, when it exists (a login reusing its device_id), gives it
// the new token.
func (tx *Tx) UpsertDevice(ctx context.Context, d Device, tokenHash string) error {
	tx.devicesChanged = true
	_, err := tx.exec(ctx, `
		INSERT INTO devices (user_id, device_id, token_hash, display_name, created_ts, last_seen_ts, last_seen_ip)
		VALUES ($1, $2, $3, $4, $5, $5, $6)
		ON CONFLICT (user_id, device_id) DO UPDATE SET token_hash = $3, last_seen_ts = $5, last_seen_ip = $6,
			token_expires_ts = 0, refresh_token_hash = NULL, prev_refresh_token_hash = NULL, superseded_refresh_token_hash = NULL, refresh_salt = NULL, oauth_scope = '',
			refresh_expires_ts = 0, oauth_client_id = ''`,
		d.UserID, d.DeviceID, tokenHash, d.DisplayName, d.CreatedTS, d.LastSeenIP)
	if tx.dialect.isUniqueViolation(err) {
		return ErrConflict
	} else if err != nil {
		return fmt.Errorf("upsert device %s %s: %w", d.UserID, d.DeviceID, err)
	}
	return nil
}

// DeviceByToken returns the device whose token hashes to tokenHash, with its account's
// flags, or ErrNotFound.
func (q *Q) DeviceByToken(ctx context.Context, tokenHash string) (*Device, error) {
	var d Device
	err := q.queryRow(ctx, `
		SELECT d.user_id, d.device_id, d.display_name, d.created_ts, d.last_seen_ts, d.last_seen_ip,
			COALESCE(a.locked, FALSE), COALESCE(a.suspended, FALSE), COALESCE(a.shadow_banned, FALSE),
			d.token_expires_ts, d.oauth_client_id, d.prev_refresh_token_hash IS NOT NULL
		FROM devices d LEFT JOIN accounts a ON a.user_id = d.user_id
		WHERE d.token_hash = $1`, tokenHash,
	).Scan(&d.UserID, &d.DeviceID, &d.DisplayName, &d.CreatedTS, &d.LastSeenTS, &d.LastSeenIP, &d.Locked, &d.Suspended, &d.ShadowBanned,
		&d.ValidUntilMS, &d.OAuthClientID, &d.prevRefresh)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select device by token: %w", err)
	}
	return &d, nil
}

// Device returns one device of userID, or ErrNotFound.
func (q *Q) Device(ctx context.Context, userID, deviceID string) (*Device, error) {
	d, err := scanDevice(q.queryRow(ctx, `SELECT `+deviceColumns+` FROM devices WHERE user_id = $1 AND device_id = $2`, userID, deviceID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select device %s %s: %w", userID, deviceID, err)
	}
	return d, nil
}

// Devices lists the devices of userID.
func (q *Q) Devices(ctx context.Context, userID string) ([]Device, error) {
	rows, err := q.query(ctx, `SELECT `+deviceColumns+` FROM devices WHERE user_id = $1 ORDER BY device_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("select devices %s: %w", userID, err)
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *d)
	}
	return out, rows.Err()
}

// SetDeviceName renames a device; ErrNotFound if it does not exist.
func (tx *Tx) SetDeviceName(ctx context.Context, userID, deviceID, name string) error {
	tx.devicesChanged = true
	res, err := tx.exec(ctx, `UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2`, userID, deviceID, name)
	if err != nil {
		return fmt.Errorf("rename device: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// DeleteDevices removes the named devices of userID; with no names, all of them. The
// pushers the devices set up go with them: a pusher lives as long as the access token that
// created it, as in Synapse (a logged-out phone must stop receiving the user's
// notifications), and with every device gone, so do pushers of no known device.
func (tx *Tx) DeleteDevices(ctx context.Context, userID string, deviceIDs ...string) error {
	tx.devicesChanged = true
	if len(deviceIDs) == 0 {
		if _, err := tx.exec(ctx, `DELETE FROM devices WHERE user_id = $1`, userID); err != nil {
			return fmt.Errorf("delete devices of %s: %w", userID, err)
		}
		if _, err := tx.exec(ctx, `DELETE FROM pushers WHERE user_id = $1`, userID); err != nil {
			return fmt.Errorf("delete pushers of %s: %w", userID, err)
		}
		// As in Synapse, the tokens an admin took to act as others end with the admin's
		// sessions, not with the sessions of the user acted as.
		if _, err := tx.exec(ctx, `DELETE FROM puppet_tokens WHERE admin_user_id = $1`, userID); err != nil {
			return fmt.Errorf("delete puppet tokens of %s: %w", userID, err)
		}
		return nil
	}
	for _, id := range deviceIDs {
		if _, err := tx.exec(ctx, `DELETE FROM devices WHERE user_id = $1 AND device_id = $2`, userID, id); err != nil {
			return fmt.Errorf("delete device %s: %w", id, err)
		}
		if _, err := tx.exec(ctx, `DELETE FROM pushers WHERE user_id = $1 AND device_id = $2`, userID, id); err != nil {
			return fmt.Errorf("delete pushers of device %s: %w", id, err)
		}
		if _, err := tx.exec(ctx, `DELETE FROM puppet_tokens WHERE user_id = $1 AND device_id = $2`, userID, id); err != nil {
			return fmt.Errorf("delete puppet token %s: %w", id, err)
		}
	}
	return nil
}

// TouchDevice records when and from where a device was last seen.
func (tx *Tx) TouchDevice(ctx context.Context, userID, deviceID string, ts int64, ip string) error {
	_, err := tx.exec(ctx, `UPDATE devices SET last_seen_ts = $3, last_seen_ip = $4 WHERE user_id = $1 AND device_id = $2`, userID, deviceID, ts, ip)
	return err
}
