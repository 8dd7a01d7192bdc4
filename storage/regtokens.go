package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// RegistrationToken is a token admins create for the m.login.registration_token stage of
// registration. UsesAllowed and ExpiryTime are nil when unlimited.
type RegistrationToken struct {
	Token       string `json:"token"`
	UsesAllowed *int64 `json:"uses_allowed"`
	Pending     int64  `json:"pending"`
	Completed   int64  `json:"completed"`
	ExpiryTime  *int64 `json:"expiry_time"`
}

// Valid reports whether the token admits another registration at time now (ms).
func (t *RegistrationToken) Valid(now int64) bool {
	return (t.UsesAllowed == nil || t.Pending+t.Completed < *t.UsesAllowed) &&
		(t.ExpiryTime == nil || *t.ExpiryTime >= now)
}

const regTokenColumns = `token, uses_allowed, pending, completed, expiry_time`

func scanRegToken(row interface{ Scan(...any) error }) (*RegistrationToken, error) {
	var t RegistrationToken
	var uses, expiry sql.NullInt64
	if err := row.Scan(&t.Token, &uses, &t.Pending, &t.Completed, &expiry); err != nil {
		return nil, err
	}
	if uses.Valid {
		t.UsesAllowed = &uses.Int64
	}
	if expiry.Valid {
		t.ExpiryTime = &expiry.Int64
	}
	return &t, nil
}

// RegistrationTokens returns every registration token, ordered by token.
func (q *Q) RegistrationTokens(ctx context.Context) ([]*RegistrationToken, error) {
	rows, err := q.query(ctx, `SELECT `+regTokenColumns+` FROM registration_tokens ORDER BY token`)
	if err != nil {
		return nil, fmt.Errorf("select registration tokens: %w", err)
	}
	defer rows.Close()
	var out []*RegistrationToken
	for rows.Next() {
		t, err := scanRegToken(rows)
		if err != nil {
			return nil, fmt.Errorf("scan registration token: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RegistrationToken returns one registration token, or ErrNotFound.
func (q *Q) RegistrationToken(ctx context.Context, token string) (*RegistrationToken, error) {
	t, err := scanRegToken(q.queryRow(ctx, `SELECT `+regTokenColumns+` FROM registration_tokens WHERE token = $1`, token))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select registration token: %w", err)
	}
	return t, nil
}

// InsertRegistrationToken stores a new token; ErrConflict if it exists.
func (tx *Tx) InsertRegistrationToken(ctx context.Context, t RegistrationToken) error {
	res, err := tx.exec(ctx, `INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES ($1, $2, $3)
		ON CONFLICT (token) DO NOTHING`, t.Token, t.UsesAllowed, t.ExpiryTime)
	if err != nil {
		return fmt.Errorf("insert registration token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrConflict
	}
	return nil
}

// UpdateRegistrationToken sets the uses allowed and the expiry time of a token (nil:
// unlimited); ErrNotFound if there is no such token.
func (tx *Tx) UpdateRegistrationToken(ctx context.Context, token string, usesAllowed, expiryTime *int64) error {
	res, err := tx.exec(ctx, `UPDATE registration_tokens SET uses_allowed = $2, expiry_time = $3 WHERE token = $1`,
		token, usesAllowed, expiryTime)
	if err != nil {
		return fmt.Errorf("update registration token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// DeleteRegistrationToken deletes a token; ErrNotFound if there is none.
func (tx *Tx) DeleteRegistrationToken(ctx context.Context, token string) error {
	res, err := tx.exec(ctx, `DELETE FROM registration_tokens WHERE token = $1`, token)
	if err != nil {
		return fmt.Errorf("delete registration token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// ReserveRegistrationToken counts one pending use of the token if it still admits one at
// time now, and reports whether it did. The check and the count are one conditional UPDATE,
// so concurrent registrations can never take more uses than allowed: PostgreSQL re-checks
// the condition on the locked row, SQLite has a single writer.
func (tx *Tx) ReserveRegistrationToken(ctx context.Context, token string, now int64) (bool, error) {
	res, err := tx.exec(ctx, `UPDATE registration_tokens SET pending = pending + 1
		WHERE token = $1 AND (uses_allowed IS NULL OR pending + completed < uses_allowed)
			AND (expiry_time IS NULL OR expiry_time >= $2)`, token, now)
	if err != nil {
		return false, fmt.Errorf("reserve registration token: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// FinishRegistrationToken turns a pending use of the token into a completed one when the
// account was created, or drops it when registration failed.
func (tx *Tx) FinishRegistrationToken(ctx context.Context, token string, completed bool) error {
	q := `UPDATE registration_tokens SET pending = pending - 1 WHERE token = $1 AND pending > 0`
	if completed {
		q = `UPDATE registration_tokens SET pending = pending - 1, completed = completed + 1 WHERE token = $1 AND pending > 0`
	}
	if _, err := tx.exec(ctx, q, token); err != nil {
		return fmt.Errorf("finish registration token: %w", err)
	}
	return nil
}
