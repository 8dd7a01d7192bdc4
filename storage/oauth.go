package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// OAuth 2.0 API: registered clients and pending grants (authorization codes and device
// authorization requests). The sessions the grants become are devices (refresh.go).

// InsertOAuthClient stores a client registered with dynamic client registration.
func (tx *Tx) InsertOAuthClient(ctx context.Context, clientID, metadata string, ts int64) error {
	_, err := tx.exec(ctx, `INSERT INTO oauth_clients (client_id, metadata, created_ts) VALUES ($1, $2, $3)`, clientID, metadata, ts)
	if err != nil {
		return fmt.Errorf("insert oauth client %s: %w", clientID, err)
	}
	return nil
}

// DeleteUnusedOAuthClients deletes up to limit clients registered before the given time
// that hold no session (device) and no grant, and returns how many it deleted. The spec lets
// a server delete registrations, but not those of clients with active sessions.
func (tx *Tx) DeleteUnusedOAuthClients(ctx context.Context, registeredBefore int64, limit int) (int64, error) {
	res, err := tx.exec(ctx, `
		DELETE FROM oauth_clients WHERE client_id IN (
			SELECT c.client_id FROM oauth_clients c WHERE c.created_ts < $1
			AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.oauth_client_id = c.client_id)
			AND NOT EXISTS (SELECT 1 FROM oauth_grants g WHERE g.client_id = c.client_id)
			LIMIT $2)`, registeredBefore, limit)
	if err != nil {
		return 0, fmt.Errorf("delete unused oauth clients: %w", err)
	}
	return res.RowsAffected()
}

// OAuthClient returns the metadata (JSON) of a registered client, or ErrNotFound.
func (q *Q) OAuthClient(ctx context.Context, clientID string) (string, error) {
	var md string
	err := q.queryRow(ctx, `SELECT metadata FROM oauth_clients WHERE client_id = $1`, clientID).Scan(&md)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	} else if err != nil {
		return "", fmt.Errorf("select oauth client %s: %w", clientID, err)
	}
	return md, nil
}

// OAuthGrant is a pending authorization code or device authorization request.
type OAuthGrant struct {
	Hash          string // SHA-256 of the code or device code
	Kind          string // "code" or "device"
	ClientID      string
	UserCode      string // device grants
	RedirectURI   string // code grants
	CodeChallenge string // code grants (S256)
	Scope         string
	UserID        string // who approved
	Status        string // pending, approved, denied
	ExpiresTS     int64
	IntervalMS    int64
	LastPollTS    int64
	Nonce         string // code grants: the OpenID Connect nonce
}

// Grant statuses.
const (
	GrantPending  = "pending"
	GrantApproved = "approved"
	GrantDenied   = "denied"
)

const grantColumns = `grant_hash, kind, client_id, COALESCE(user_code, ''), redirect_uri, code_challenge, scope, user_id, status, expires_ts, interval_ms, last_poll_ts, nonce`

func scanGrant(row interface{ Scan(...any) error }) (*OAuthGrant, error) {
	var g OAuthGrant
	err := row.Scan(&g.Hash, &g.Kind, &g.ClientID, &g.UserCode, &g.RedirectURI, &g.CodeChallenge, &g.Scope, &g.UserID, &g.Status, &g.ExpiresTS, &g.IntervalMS, &g.LastPollTS, &g.Nonce)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select oauth grant: %w", err)
	}
	return &g, nil
}

// grantKeptFor is how long (ms) a grant stays after it expired: a device code polled late
// answers expired_token rather than invalid_grant (RFC 8628 section 3.5), and a used
// authorization code presented again still ends the session it gave.
const grantKeptFor = 60 * 60 * 1000

// InsertOAuthGrant stores a grant, first deleting the grants that expired an hour before
// now. ErrConflict: the user code is taken.
func (tx *Tx) InsertOAuthGrant(ctx context.Context, g OAuthGrant, now int64) error {
	if _, err := tx.exec(ctx, `DELETE FROM oauth_grants WHERE expires_ts < $1`, now-grantKeptFor); err != nil {
		return fmt.Errorf("delete expired oauth grants: %w", err)
	}
	var userCode any
	if g.UserCode != "" {
		userCode = g.UserCode
	}
	_, err := tx.exec(ctx, `
		INSERT INTO oauth_grants (grant_hash, kind, client_id, user_code, redirect_uri, code_challenge, scope, user_id, status, expires_ts, interval_ms, last_poll_ts, nonce)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		g.Hash, g.Kind, g.ClientID, userCode, g.RedirectURI, g.CodeChallenge, g.Scope, g.UserID, g.Status, g.ExpiresTS, g.IntervalMS, g.LastPollTS, g.Nonce)
	if tx.dialect.isUniqueViolation(err) {
		return ErrConflict
	} else if err != nil {
		return fmt.Errorf("insert oauth grant: %w", err)
	}
	return nil
}

// TakeOAuthGrant deletes the grant of the given kind and hash and returns it: a code is
// used once. ErrNotFound: no such grant (never issued, or already used).
func (tx *Tx) TakeOAuthGrant(ctx context.Context, kind, hash string) (*OAuthGrant, error) {
	return scanGrant(tx.queryRow(ctx, `DELETE FROM oauth_grants WHERE kind = $1 AND grant_hash = $2 RETURNING `+grantColumns, kind, hash))
}

// ErrCodeUsed is UseOAuthCode's answer for an authorization code used before.
type ErrCodeUsed struct {
	UserID   string
	DeviceID string // the device of the session it gave; "" if it gave none
}

func (e *ErrCodeUsed) Error() string { return "authorization code used before" }

// UseOAuthCode marks the authorization code that hashes to hash as used and returns it: a
// code is used once. ErrNotFound: never issued (or long expired); *ErrCodeUsed: used before.
func (tx *Tx) UseOAuthCode(ctx context.Context, hash string) (*OAuthGrant, error) {
	g, err := scanGrant(tx.queryRow(ctx, `UPDATE oauth_grants SET used_device_id = ''
		WHERE kind = 'code' AND grant_hash = $1 AND used_device_id IS NULL RETURNING `+grantColumns, hash))
	if !errors.Is(err, ErrNotFound) {
		return g, err
	}
	var used ErrCodeUsed
	err = tx.queryRow(ctx, `SELECT user_id, used_device_id FROM oauth_grants WHERE kind = 'code' AND grant_hash = $1 AND used_device_id IS NOT NULL`, hash).
		Scan(&used.UserID, &used.DeviceID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select used oauth code: %w", err)
	}
	return nil, &used
}

// SetOAuthCodeDevice records the device of the session a used authorization code gave.
func (tx *Tx) SetOAuthCodeDevice(ctx context.Context, hash, deviceID string) error {
	if _, err := tx.exec(ctx, `UPDATE oauth_grants SET used_device_id = $2 WHERE kind = 'code' AND grant_hash = $1`, hash, deviceID); err != nil {
		return fmt.Errorf("set oauth code device: %w", err)
	}
	return nil
}

// OAuthGrant returns the grant of the given kind and hash, or ErrNotFound.
func (q *Q) OAuthGrant(ctx context.Context, kind, hash string) (*OAuthGrant, error) {
	return scanGrant(q.queryRow(ctx, `SELECT `+grantColumns+` FROM oauth_grants WHERE kind = $1 AND grant_hash = $2`, kind, hash))
}

// OAuthGrantByUserCode returns the device grant with the given user code, or ErrNotFound.
func (q *Q) OAuthGrantByUserCode(ctx context.Context, userCode string) (*OAuthGrant, error) {
	return scanGrant(q.queryRow(ctx, `SELECT `+grantColumns+` FROM oauth_grants WHERE kind = 'device' AND user_code = $1`, userCode))
}

// DecideDeviceGrant approves (for userID) or denies the pending device grant with the user
// code; ErrNotFound unless it is pending and unexpired.
func (tx *Tx) DecideDeviceGrant(ctx context.Context, userCode, userID, status string, now int64) error {
	res, err := tx.exec(ctx, `
		UPDATE oauth_grants SET status = $2, user_id = $3
		WHERE kind = 'device' AND user_code = $1 AND status = 'pending' AND expires_ts > $4`,
		userCode, status, userID, now)
	if err != nil {
		return fmt.Errorf("decide device grant: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// PollOAuthGrant records a poll of a device grant at now and returns the grant as it was
// before, with the poll before this one in LastPollTS; ErrNotFound when there is none.
func (tx *Tx) PollOAuthGrant(ctx context.Context, hash string, now int64) (*OAuthGrant, error) {
	g, err := scanGrant(tx.queryRow(ctx, `SELECT `+grantColumns+` FROM oauth_grants WHERE kind = 'device' AND grant_hash = $1`, hash))
	if err != nil {
		return nil, err
	}
	if _, err := tx.exec(ctx, `UPDATE oauth_grants SET last_poll_ts = $2 WHERE grant_hash = $1`, hash, now); err != nil {
		return nil, fmt.Errorf("poll device grant: %w", err)
	}
	return g, nil
}

// SlowOAuthGrant raises the polling interval of a device grant (slow_down, RFC 8628 3.5).
func (tx *Tx) SlowOAuthGrant(ctx context.Context, hash string, intervalMS int64) error {
	_, err := tx.exec(ctx, `UPDATE oauth_grants SET interval_ms = $2 WHERE grant_hash = $1`, hash, intervalMS)
	return err
}

// AllowCrossSigningReset lets userID's OAuth sessions replace the cross-signing keys until
// untilTS (Unix ms; 0 withdraws it).
func (tx *Tx) AllowCrossSigningReset(ctx context.Context, userID string, untilTS int64) error {
	if _, err := tx.exec(ctx, `UPDATE accounts SET cross_signing_reset_ts = $2 WHERE user_id = $1`, userID, untilTS); err != nil {
		return fmt.Errorf("allow cross-signing reset of %s: %w", userID, err)
	}
	return nil
}

// CrossSigningResetAllowed returns until when userID allowed the cross-signing reset (Unix
// ms; 0: not allowed).
func (q *Q) CrossSigningResetAllowed(ctx context.Context, userID string) (int64, error) {
	var ts int64
	err := q.queryRow(ctx, `SELECT cross_signing_reset_ts FROM accounts WHERE user_id = $1`, userID).Scan(&ts)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("select cross-signing reset of %s: %w", userID, err)
	}
	return ts, nil
}
