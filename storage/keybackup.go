package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// KeyBackupVersion is one version of a user's server-side key backup.
type KeyBackupVersion struct {
	UserID    string
	Version   int64
	Algorithm string
	AuthData  string // JSON object
	ETag      int64
	Deleted   bool
}

// BackupSession is one backed-up megolm session key (KeyBackupData).
type BackupSession struct {
	RoomID            string
	SessionID         string
	FirstMessageIndex int64
	ForwardedCount    int64
	IsVerified        bool
	SessionData       string // JSON object
}

// CreateKeyBackupVersion creates the user's next backup version, which becomes the current
// one, and returns its number. Numbers of deleted versions are not reused. ErrConflict when
// a concurrent transaction took the same number.
func (tx *Tx) CreateKeyBackupVersion(ctx context.Context, userID, algorithm, authData string) (int64, error) {
	var v int64
	err := tx.queryRow(ctx, `
		INSERT INTO key_backup_versions (user_id, version, algorithm, auth_data, etag, deleted)
		SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, 0, FALSE FROM key_backup_versions WHERE user_id = $1
		RETURNING version`, userID, algorithm, authData).Scan(&v)
	if tx.dialect.isUniqueViolation(err) {
		return 0, ErrConflict
	} else if err != nil {
		return 0, fmt.Errorf("insert key backup version for %s: %w", userID, err)
	}
	return v, nil
}

const backupVersionColumns = `user_id, version, algorithm, auth_data, etag, deleted`

func scanBackupVersion(row *sql.Row) (*KeyBackupVersion, error) {
	var v KeyBackupVersion
	err := row.Scan(&v.UserID, &v.Version, &v.Algorithm, &v.AuthData, &v.ETag, &v.Deleted)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select key backup version: %w", err)
	}
	return &v, nil
}

// CurrentKeyBackupVersion returns the user's newest backup version that is not deleted, or
// ErrNotFound.
func (q *Q) CurrentKeyBackupVersion(ctx context.Context, userID string) (*KeyBackupVersion, error) {
	return scanBackupVersion(q.queryRow(ctx, `
		SELECT `+backupVersionColumns+` FROM key_backup_versions
		WHERE user_id = $1 AND NOT deleted ORDER BY version DESC LIMIT 1`, userID))
}

// KeyBackupVersion returns one backup version, deleted or not, or ErrNotFound.
func (q *Q) KeyBackupVersion(ctx context.Context, userID string, version int64) (*KeyBackupVersion, error) {
	return scanBackupVersion(q.queryRow(ctx, `
		SELECT `+backupVersionColumns+` FROM key_backup_versions WHERE user_id = $1 AND version = $2`, userID, version))
}

// SetKeyBackupAuthData replaces the auth_data of a backup version.
func (tx *Tx) SetKeyBackupAuthData(ctx context.Context, userID string, version int64, authData string) error {
	_, err := tx.exec(ctx, `UPDATE key_backup_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2`, userID, version, authData)
	if err != nil {
		return fmt.Errorf("update key backup version %d: %w", version, err)
	}
	return nil
}

// DeleteKeyBackupVersion marks a backup version deleted and deletes its keys.
func (tx *Tx) DeleteKeyBackupVersion(ctx context.Context, userID string, version int64) error {
	if _, err := tx.exec(ctx, `UPDATE key_backup_versions SET deleted = TRUE WHERE user_id = $1 AND version = $2`, userID, version); err != nil {
		return fmt.Errorf("delete key backup version %d: %w", version, err)
	}
	if _, err := tx.exec(ctx, `DELETE FROM key_backup_sessions WHERE user_id = $1 AND version = $2`, userID, version); err != nil {
		return fmt.Errorf("delete keys of backup version %d: %w", version, err)
	}
	return nil
}

// PutBackupSessions stores session keys in a backup version. Where a key for the session is
// already stored, the better one is kept, as the spec's "Server-side key backups" says:
//  1. the verified one, if exactly one of them is verified;
//  2. else the one with the lower first_message_index;
//  3. else the one with the lower forwarded_count.
//
// The version's etag changes when any key was stored.
func (tx *Tx) PutBackupSessions(ctx context.Context, userID string, version int64, sessions []BackupSession) error {
	changed := false
	for _, s := range sessions {
		res, err := tx.exec(ctx, `
			INSERT INTO key_backup_sessions (user_id, version, room_id, session_id, first_message_index,
				forwarded_count, is_verified, session_data)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET
				first_message_index = EXCLUDED.first_message_index, forwarded_count = EXCLUDED.forwarded_count,
				is_verified = EXCLUDED.is_verified, session_data = EXCLUDED.session_data
			WHERE (EXCLUDED.is_verified AND NOT key_backup_sessions.is_verified)
				OR (EXCLUDED.is_verified = key_backup_sessions.is_verified AND (
					EXCLUDED.first_message_index < key_backup_sessions.first_message_index
					OR (EXCLUDED.first_message_index = key_backup_sessions.first_message_index
						AND EXCLUDED.forwarded_count < key_backup_sessions.forwarded_count)))`,
			userID, version, s.RoomID, s.SessionID, s.FirstMessageIndex, s.ForwardedCount, s.IsVerified, s.SessionData)
		if err != nil {
			return fmt.Errorf("upsert backup key %s %s: %w", s.RoomID, s.SessionID, err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			changed = true
		}
	}
	if changed {
		return tx.bumpBackupETag(ctx, userID, version)
	}
	return nil
}

func (tx *Tx) bumpBackupETag(ctx context.Context, userID string, version int64) error {
	_, err := tx.exec(ctx, `UPDATE key_backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2`, userID, version)
	if err != nil {
		return fmt.Errorf("update etag of backup version %d: %w", version, err)
	}
	return nil
}

// backupFilter returns the WHERE clause and arguments selecting the keys of a version, of
// one room when roomID is set, and of one session when sessionID is set too.
func backupFilter(userID string, version int64, roomID, sessionID string) (string, []any) {
	where, args := `user_id = $1 AND version = $2`, []any{userID, version}
	if roomID != "" {
		where, args = where+` AND room_id = $3`, append(args, roomID)
		if sessionID != "" {
			where, args = where+` AND session_id = $4`, append(args, sessionID)
		}
	}
	return where, args
}

// BackupSessions returns the keys of a backup version, optionally only those of a room or a
// session.
func (q *Q) BackupSessions(ctx context.Context, userID string, version int64, roomID, sessionID string) ([]BackupSession, error) {
	where, args := backupFilter(userID, version, roomID, sessionID)
	rows, err := q.query(ctx, `
		SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
		FROM key_backup_sessions WHERE `+where+` ORDER BY room_id, session_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("select backup keys: %w", err)
	}
	defer rows.Close()
	var out []BackupSession
	for rows.Next() {
		var s BackupSession
		if err := rows.Scan(&s.RoomID, &s.SessionID, &s.FirstMessageIndex, &s.ForwardedCount, &s.IsVerified, &s.SessionData); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// DeleteBackupSessions deletes keys of a backup version (of a room, or of a session, as
// BackupSessions selects them) and changes its etag when any was deleted.
func (tx *Tx) DeleteBackupSessions(ctx context.Context, userID string, version int64, roomID, sessionID string) error {
	where, args := backupFilter(userID, version, roomID, sessionID)
	res, err := tx.exec(ctx, `DELETE FROM key_backup_sessions WHERE `+where, args...)
	if err != nil {
		return fmt.Errorf("delete backup keys: %w", err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return tx.bumpBackupETag(ctx, userID, version)
	}
	return nil
}

// CountBackupSessions returns the number of keys in a backup version.
func (q *Q) CountBackupSessions(ctx context.Context, userID string, version int64) (int64, error) {
	var n int64
	err := q.queryRow(ctx, `SELECT COUNT(*) FROM key_backup_sessions WHERE user_id = $1 AND version = $2`, userID, version).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count backup keys: %w", err)
	}
	return n, nil
}
