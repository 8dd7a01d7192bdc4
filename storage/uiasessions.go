package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// UIASession is a user-interactive authentication session issued to a signed-in user for
// one request.
type UIASession struct {
	SessionID   string
	UserID      string
	Method      string
	Path        string
	Description string // what the request does, in words for the user ("change your password")
	ExpiresTS   int64  // ms
}

// InsertUIASession records an issued session and deletes the sessions that expired before
// nowTS.
func (tx *Tx) InsertUIASession(ctx context.Context, s UIASession, nowTS int64) error {
	if _, err := tx.exec(ctx, `DELETE FROM uia_sessions WHERE expires_ts < $1`, nowTS); err != nil {
		return fmt.Errorf("delete expired UIA sessions: %w", err)
	}
	_, err := tx.exec(ctx, `INSERT INTO uia_sessions (session_id, user_id, method, path, description, expires_ts)
		VALUES ($1, $2, $3, $4, $5, $6)`, s.SessionID, s.UserID, s.Method, s.Path, s.Description, s.ExpiresTS)
	if err != nil {
		return fmt.Errorf("insert UIA session of %s: %w", s.UserID, err)
	}
	// A user keeps at most maxUIASessionsPerUser open sessions: requests that only start
	// sessions cannot grow the table without bound.
	_, err = tx.exec(ctx, `DELETE FROM uia_sessions WHERE user_id = $1 AND session_id NOT IN
		(SELECT session_id FROM uia_sessions WHERE user_id = $1 ORDER BY expires_ts DESC LIMIT $2)`, s.UserID, maxUIASessionsPerUser)
	if err != nil {
		return fmt.Errorf("trim UIA sessions of %s: %w", s.UserID, err)
	}
	return nil
}

// maxUIASessionsPerUser is how many open user-interactive authentication sessions a user
// keeps; the oldest beyond it are forgotten.
const maxUIASessionsPerUser = 20

// UIASession returns an issued session: ErrNotFound when it was never issued, was used, or
// expired before nowTS.
func (db *DB) UIASession(ctx context.Context, sessionID string, nowTS int64) (UIASession, error) {
	s := UIASession{SessionID: sessionID}
	err := db.queryRow(ctx, `SELECT user_id, method, path, description, expires_ts FROM uia_sessions WHERE session_id = $1`, sessionID).
		Scan(&s.UserID, &s.Method, &s.Path, &s.Description, &s.ExpiresTS)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && s.ExpiresTS < nowTS) {
		return UIASession{}, ErrNotFound
	} else if err != nil {
		return UIASession{}, fmt.Errorf("get UIA session: %w", err)
	}
	return s, nil
}

// DeleteUIASession forgets a session (its request succeeded).
func (tx *Tx) DeleteUIASession(ctx context.Context, sessionID string) error {
	if _, err := tx.exec(ctx, `DELETE FROM uia_sessions WHERE session_id = $1`, sessionID); err != nil {
		return fmt.Errorf("delete UIA session: %w", err)
	}
	return nil
}
