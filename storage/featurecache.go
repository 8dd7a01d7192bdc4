package storage

import (
	"context"
	"errors"
	"fmt"
)

// The reads here sit on every send or every /sync and nearly always find nothing: a rate
// limit override for the sender, a leave of a purged room in the sync's range, a sticky event
// in a room, the notifications to push when nobody has a pusher. Each is answered from a read cache (cache.go) that the transactions writing the
// table invalidate, so that a server where the feature is unused runs no statement for it.

// overrideEntry is the cached override of one user; found is false when they have none.
type overrideEntry struct {
	o     RateLimitOverride
	found bool
}

// RateLimitOverride returns the admin's override of the user's message rate limit, or
// ErrNotFound: cached until a transaction of any process sets or removes an override.
func (db *DB) RateLimitOverride(ctx context.Context, userID string) (*RateLimitOverride, error) {
	e, ok, gen, err := db.overrides.get(ctx, &db.Q, userID)
	if err != nil {
		return nil, err
	}
	if !ok {
		o, err := db.Q.RateLimitOverride(ctx, userID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if e.found = err == nil; e.found {
			e.o = *o
		}
		db.overrides.put(userID, e, gen)
	}
	if !e.found {
		return nil, ErrNotFound
	}
	o := e.o
	return &o, nil
}

// PurgedLeaves returns the user's leaves of purged rooms at stream positions in (since, to]:
// no statement when no leave was recorded after since (the latest position is cached until a
// purge records more).
func (db *DB) PurgedLeaves(ctx context.Context, userID string, since, to int64) ([]PurgedLeave, error) {
	latest, ok, gen, err := db.purgedLeaves.get(ctx, &db.Q, struct{}{})
	if err != nil {
		return nil, err
	}
	if !ok {
		if err := db.Q.queryRow(ctx, `SELECT COALESCE(MAX(stream_pos), 0) FROM purged_room_leaves`).Scan(&latest); err != nil {
			return nil, fmt.Errorf("latest purged room leave: %w", err)
		}
		db.purgedLeaves.put(struct{}{}, latest, gen)
	}
	if latest <= since {
		return nil, nil
	}
	return db.Q.PurgedLeaves(ctx, userID, since, to)
}

// StickyEvents is Q.StickyEvents without a statement for a room none of whose events is
// sticky at now: the latest expiry of the room's sticky events is cached until a transaction
// records a new one.
func (db *DB) StickyEvents(ctx context.Context, roomNID, since, upTo, now int64, limit int) ([]StickyEvent, error) {
	until, ok, gen, err := db.stickyUntil.get(ctx, &db.Q, roomNID)
	if err != nil {
		return nil, err
	}
	if !ok {
		if err := db.Q.queryRow(ctx, `SELECT COALESCE(MAX(expires_ts), 0) FROM sticky_events WHERE room_nid = $1`, roomNID).Scan(&until); err != nil {
			return nil, fmt.Errorf("latest sticky expiry: %w", err)
		}
		db.stickyUntil.put(roomNID, until, gen)
	}
	if until <= now {
		return nil, nil
	}
	return db.Q.StickyEvents(ctx, roomNID, since, upTo, now, limit)
}

// PushActionsAfter is Q.PushActionsAfter without a statement while no user has an HTTP
// pusher (whether one exists is cached until a transaction sets a pusher): the pusher worker
// asks after every burst of commits.
func (db *DB) PushActionsAfter(ctx context.Context, after, upTo int64, limit int) ([]PushAction, error) {
	exists, ok, gen, err := db.httpPushers.get(ctx, &db.Q, struct{}{})
	if err != nil {
		return nil, err
	}
	if !ok {
		if err := db.Q.queryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pushers WHERE kind = 'http')`).Scan(&exists); err != nil {
			return nil, fmt.Errorf("any http pusher: %w", err)
		}
		db.httpPushers.put(struct{}{}, exists, gen)
	}
	if !exists {
		return nil, nil
	}
	return db.Q.PushActionsAfter(ctx, after, upTo, limit)
}
