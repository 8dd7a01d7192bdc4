package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Profile is a user's global display name and avatar.
type Profile struct {
	DisplayName string
	AvatarURL   string
}

// Profile returns the profile of userID, or ErrNotFound.
func (q *Q) Profile(ctx context.Context, userID string) (*Profile, error) {
	var p Profile
	err := q.queryRow(ctx, `SELECT displayname, avatar_url FROM profiles WHERE user_id = $1`, userID).Scan(&p.DisplayName, &p.AvatarURL)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select profile %s: %w", userID, err)
	}
	return &p, nil
}

// SetProfile replaces the profile of userID.
func (tx *Tx) SetProfile(ctx context.Context, userID string, p Profile) error {
	_, err := tx.exec(ctx, `
		INSERT INTO profiles (user_id, displayname, avatar_url) VALUES ($1, $2, $3)
		ON CONFLICT (user_id) DO UPDATE SET displayname = $2, avatar_url = $3`, userID, p.DisplayName, p.AvatarURL)
	if err != nil {
		return fmt.Errorf("update profile %s: %w", userID, err)
	}
	return nil
}
