package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// EmailSession is a validation of an email address that this server runs itself (table
// email_sessions). ValidatedTS is 0 until the mailed token was submitted.
type EmailSession struct {
	SID          string
	ClientSecret string
	Email        string
	Purpose      string
	TokenHash    string
	SendAttempt  int64
	NextLink     string
	CreatedTS    int64
	ExpiresTS    int64
	ValidatedTS  int64
	UIASession   string // the user-interactive auth session it completed a stage of, or ""
}

const emailSessionColumns = `sid, client_secret, email, purpose, token_hash, send_attempt, next_link,
	created_ts, expires_ts, validated_ts, uia_session`

func scanEmailSession(row *sql.Row) (*EmailSession, error) {
	var s EmailSession
	err := row.Scan(&s.SID, &s.ClientSecret, &s.Email, &s.Purpose, &s.TokenHash, &s.SendAttempt,
		&s.NextLink, &s.CreatedTS, &s.ExpiresTS, &s.ValidatedTS, &s.UIASession)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select email session: %w", err)
	}
	return &s, nil
}

// EmailSession returns the session sid, or ErrNotFound.
func (q *Q) EmailSession(ctx context.Context, sid string) (*EmailSession, error) {
	return scanEmailSession(q.queryRow(ctx, `SELECT `+emailSessionColumns+`
		FROM email_sessions WHERE sid = $1`, sid))
}

// EmailSessionBySecret returns the session of a client's (client_secret, email) pair, or
// ErrNotFound.
func (q *Q) EmailSessionBySecret(ctx context.Context, clientSecret, email string) (*EmailSession, error) {
	return scanEmailSession(q.queryRow(ctx, `SELECT `+emailSessionColumns+`
		FROM email_sessions WHERE client_secret = $1 AND email = $2`, clientSecret, email))
}

// PutEmailSession inserts s, or replaces the session of the same (client_secret, email)
// pair: a new send attempt mails a new token, and the session keeps its sid but starts over
// (not validated, the new purpose, no UIA session).
func (tx *Tx) PutEmailSession(ctx context.Context, s EmailSession) error {
	_, err := tx.exec(ctx, `INSERT INTO email_sessions (`+emailSessionColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (client_secret, email) DO UPDATE SET token_hash = excluded.token_hash,
			send_attempt = excluded.send_attempt, next_link = excluded.next_link,
			expires_ts = excluded.expires_ts, purpose = excluded.purpose,
			validated_ts = excluded.validated_ts, uia_session = excluded.uia_session`,
		s.SID, s.ClientSecret, s.Email, s.Purpose, s.TokenHash, s.SendAttempt, s.NextLink,
		s.CreatedTS, s.ExpiresTS, s.ValidatedTS, s.UIASession)
	if err != nil {
		return fmt.Errorf("put email session %s: %w", s.SID, err)
	}
	return nil
}

// ValidateEmailSession records that session sid's token (of hash tokenHash: not one a newer
// send attempt replaced meanwhile) was submitted at now. It reports whether this call
// validated it (false: validated already, or the token was replaced).
func (tx *Tx) ValidateEmailSession(ctx context.Context, sid, tokenHash string, now int64) (bool, error) {
	res, err := tx.exec(ctx, `UPDATE email_sessions SET validated_ts = $3
		WHERE sid = $1 AND token_hash = $2 AND validated_ts = 0`, sid, tokenHash, now)
	if err != nil {
		return false, fmt.Errorf("validate email session %s: %w", sid, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// EmailSessionByUIA returns the validated session that completed a stage of the
// user-interactive auth session uiaSession, or ErrNotFound.
func (q *Q) EmailSessionByUIA(ctx context.Context, uiaSession string) (*EmailSession, error) {
	if uiaSession == "" {
		return nil, ErrNotFound
	}
	return scanEmailSession(q.queryRow(ctx, `SELECT `+emailSessionColumns+`
		FROM email_sessions WHERE uia_session = $1 AND validated_ts > 0
		ORDER BY validated_ts DESC LIMIT 1`, uiaSession))
}

// SetEmailSessionUIA records that session sid completed a stage of uiaSession.
func (tx *Tx) SetEmailSessionUIA(ctx context.Context, sid, uiaSession string) error {
	if _, err := tx.exec(ctx, `UPDATE email_sessions SET uia_session = $2 WHERE sid = $1`, sid, uiaSession); err != nil {
		return fmt.Errorf("set uia session of email session %s: %w", sid, err)
	}
	return nil
}

// DeleteEmailSession deletes session sid (it was used); ErrNotFound if it is gone already,
// so that of two requests using one session only one succeeds.
func (tx *Tx) DeleteEmailSession(ctx context.Context, sid string) error {
	res, err := tx.exec(ctx, `DELETE FROM email_sessions WHERE sid = $1`, sid)
	if err != nil {
		return fmt.Errorf("delete email session %s: %w", sid, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// DeleteExpiredEmailSessions deletes the sessions that expired before now.
func (tx *Tx) DeleteExpiredEmailSessions(ctx context.Context, now int64) error {
	if _, err := tx.exec(ctx, `DELETE FROM email_sessions WHERE expires_ts < $1`, now); err != nil {
		return fmt.Errorf("delete expired email sessions: %w", err)
	}
	return nil
}

// AddThreePID binds a third-party ID (address canonical) to userID, validated and added at
// now. ErrThreePIDInUse if it is bound to another account; binding it again to the same
// account changes nothing.
func (tx *Tx) AddThreePID(ctx context.Context, userID, medium, address string, now int64) error {
	owner, err := tx.UserByThreePID(ctx, medium, address)
	if err == nil {
		if owner != userID {
			return fmt.Errorf("%w: %s %s", ErrThreePIDInUse, medium, address)
		}
		return nil
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	_, err = tx.exec(ctx, `INSERT INTO user_threepids (medium, address, user_id, validated_at, added_at)
		VALUES ($1, $2, $3, $4, $4)`, medium, address, userID, now)
	if tx.dialect.isUniqueViolation(err) {
		return fmt.Errorf("%w: %s %s", ErrThreePIDInUse, medium, address)
	} else if err != nil {
		return fmt.Errorf("insert third-party ID of %s: %w", userID, err)
	}
	return nil
}

// DeleteThreePID unbinds a third-party ID from userID; ErrNotFound if it was not bound to it.
func (tx *Tx) DeleteThreePID(ctx context.Context, userID, medium, address string) error {
	res, err := tx.exec(ctx, `DELETE FROM user_threepids WHERE user_id = $1 AND medium = $2 AND address = $3`,
		userID, medium, address)
	if err != nil {
		return fmt.Errorf("delete third-party ID of %s: %w", userID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}
