package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// InsertAlias maps alias to roomID; ErrConflict if the alias is taken.
func (tx *Tx) InsertAlias(ctx context.Context, alias, roomID, creator string) error {
	_, err := tx.exec(ctx, `INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3)`, alias, roomID, creator)
	if tx.dialect.isUniqueViolation(err) {
		return ErrConflict
	} else if err != nil {
		return fmt.Errorf("insert alias %s: %w", alias, err)
	}
	return nil
}

// Alias returns the room ID and creator of alias, or ErrNotFound.
func (q *Q) Alias(ctx context.Context, alias string) (roomID, creator string, err error) {
	err = q.queryRow(ctx, `SELECT room_id, creator FROM room_aliases WHERE alias = $1`, alias).Scan(&roomID, &creator)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", ErrNotFound
	} else if err != nil {
		return "", "", fmt.Errorf("select alias %s: %w", alias, err)
	}
	return roomID, creator, nil
}

// DeleteAlias removes alias.
func (tx *Tx) DeleteAlias(ctx context.Context, alias string) error {
	_, err := tx.exec(ctx, `DELETE FROM room_aliases WHERE alias = $1`, alias)
	return err
}

// RoomAliases lists the local aliases of roomID.
func (q *Q) RoomAliases(ctx context.Context, roomID string) ([]string, error) {
	return q.strings(ctx, `SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias`, roomID)
}
