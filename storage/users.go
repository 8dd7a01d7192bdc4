package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// User is what the admin API shows of a local account: its flags, profile and activity.
type User struct {
	UserID       string
	IsAdmin      bool
	Deactivated  bool
	Erased       bool
	ShadowBanned bool
	Locked       bool
	Suspended    bool
	UserType     *string // nil for a normal user
	DisplayName  string  // "" when unset
	AvatarURL    string  // "" when unset
	CreatedTS    int64
	LastSeenTS   *int64 // the latest of the devices' last-seen times; nil without devices
}

const userColumns = `a.user_id, a.is_admin, a.deactivated, a.erased, a.shadow_banned, a.locked,
	a.suspended, a.user_type, COALESCE(p.displayname, ''), COALESCE(p.avatar_url, ''), a.created_ts,
	(SELECT MAX(d.last_seen_ts) FROM devices d WHERE d.user_id = a.user_id) AS last_seen`

const userFrom = ` FROM accounts a LEFT JOIN profiles p ON p.user_id = a.user_id`

func scanUser(row interface{ Scan(...any) error }) (*User, error) {
	var u User
	var userType sql.NullString
	var lastSeen sql.NullInt64
	err := row.Scan(&u.UserID, &u.IsAdmin, &u.Deactivated, &u.Erased, &u.ShadowBanned, &u.Locked,
		&u.Suspended, &userType, &u.DisplayName, &u.AvatarURL, &u.CreatedTS, &lastSeen)
	if userType.Valid {
		u.UserType = &userType.String
	}
	if lastSeen.Valid {
		u.LastSeenTS = &lastSeen.Int64
	}
	return &u, err
}

// User returns the admin view of the local account userID, or ErrNotFound.
func (q *Q) User(ctx context.Context, userID string) (*User, error) {
	u, err := scanUser(q.queryRow(ctx, `SELECT `+userColumns+userFrom+` WHERE a.user_id = $1`, userID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select user %s: %w", userID, err)
	}
	return u, nil
}

// UserFilter selects and orders the accounts of Users. A nil tri-state includes both kinds.
type UserFilter struct {
	Name         string   // substring of the localpart or the display name
	UserID       string   // substring of the user ID, when Name is empty
	Deactivated  *bool    // only deactivated (true) or only active (false) accounts
	Admins       *bool    // only admins (true) or only non-admins (false)
	Locked       *bool    // only locked (true) or only unlocked (false) accounts
	NotUserTypes []string // user types to leave out; "" leaves out accounts without a type
	OrderBy      string   // one of UserOrders' keys; "" orders by user ID
	Backwards    bool
	From, Limit  int
}

// UserOrders maps the admin API's order_by values to their SQL sort keys.
var UserOrders = map[string]string{
	"name":          "a.user_id",
	"is_guest":      "a.user_id", // there are no guest accounts
	"admin":         "a.is_admin",
	"user_type":     "COALESCE(a.user_type, '')",
	"deactivated":   "a.deactivated",
	"shadow_banned": "a.shadow_banned",
	"displayname":   "COALESCE(p.displayname, '')",
	"avatar_url":    "COALESCE(p.avatar_url, '')",
	"creation_ts":   "a.created_ts",
	"last_seen_ts":  "COALESCE(last_seen, 0)",
	"locked":        "a.locked",
}

// likePattern is a LIKE pattern matching s anywhere, with LIKE's wildcards in s escaped.
func likePattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(strings.ToLower(s)) + "%"
}

// Users returns one page of the accounts f selects, in its order (ties by user ID), and how
// many accounts it selects in all.
func (q *Q) Users(ctx context.Context, f UserFilter) ([]User, int, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	switch {
	case f.Name != "":
		// The localpart: between the "@" and the first ":" (a server name has no "@").
		where = append(where, `(LOWER(a.user_id) LIKE `+arg("@"+likePattern(f.Name)+":%")+` ESCAPE '\'`+
			` OR LOWER(COALESCE(p.displayname, '')) LIKE `+arg(likePattern(f.Name))+` ESCAPE '\')`)
	case f.UserID != "":
		where = append(where, `LOWER(a.user_id) LIKE `+arg(likePattern(f.UserID))+` ESCAPE '\'`)
	}
	for col, v := range map[string]*bool{"a.deactivated": f.Deactivated, "a.is_admin": f.Admins, "a.locked": f.Locked} {
		if v != nil {
			where = append(where, col+" = "+arg(*v))
		}
	}
	for _, t := range f.NotUserTypes {
		if t == "" {
			where = append(where, "a.user_type IS NOT NULL")
		} else {
			where = append(where, "COALESCE(a.user_type, '') <> "+arg(t))
		}
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	var total int
	if err := q.queryRow(ctx, `SELECT COUNT(*)`+userFrom+cond, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count users: %w", err)
	}
	key, ok := UserOrders[f.OrderBy]
	if !ok {
		key = "a.user_id"
	}
	dir := "ASC"
	if f.Backwards {
		dir = "DESC"
	}
	query := `SELECT ` + userColumns + userFrom + cond +
		` ORDER BY ` + key + ` ` + dir + `, a.user_id ASC LIMIT ` + arg(f.Limit) + ` OFFSET ` + arg(f.From)
	rows, err := q.query(ctx, query, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("select users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, *u)
	}
	return out, total, rows.Err()
}

// Account flags the admin API sets with SetAccountFlag.
const (
	FlagAdmin        = "is_admin"
	FlagLocked       = "locked"
	FlagSuspended    = "suspended"
	FlagShadowBanned = "shadow_banned"
	FlagErased       = "erased"
	FlagDeactivated  = "deactivated"
)

// SetAccountFlag sets one of the Flag* columns of userID's account; ErrNotFound if there is
// no such account. The access-token cache carries the lock, suspension and shadow-ban flags
// (DeviceByToken), so a change reaches every process's next request.
func (tx *Tx) SetAccountFlag(ctx context.Context, userID, flag string, v bool) error {
	switch flag {
	case FlagAdmin, FlagLocked, FlagSuspended, FlagShadowBanned, FlagErased, FlagDeactivated:
	default:
		return fmt.Errorf("set account flag: unknown flag %q", flag)
	}
	tx.devicesChanged = true
	res, err := tx.exec(ctx, `UPDATE accounts SET `+flag+` = $2 WHERE user_id = $1`, userID, v)
	if err != nil {
		return fmt.Errorf("set %s of %s: %w", flag, userID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// SetUserType sets (nil: clears) the user type of userID's account.
func (tx *Tx) SetUserType(ctx context.Context, userID string, userType *string) error {
	if _, err := tx.exec(ctx, `UPDATE accounts SET user_type = $2 WHERE user_id = $1`, userID, userType); err != nil {
		return fmt.Errorf("set user type of %s: %w", userID, err)
	}
	return nil
}

// RateLimitOverride is a per-user override of the message-send rate limit; zero for both
// means no limit.
type RateLimitOverride struct {
	MessagesPerSecond int64
	BurstCount        int64
}

// RateLimitOverride returns the override of userID, or ErrNotFound when there is none.
func (q *Q) RateLimitOverride(ctx context.Context, userID string) (*RateLimitOverride, error) {
	var o RateLimitOverride
	err := q.queryRow(ctx, `SELECT messages_per_second, burst_count FROM ratelimit_overrides WHERE user_id = $1`, userID).
		Scan(&o.MessagesPerSecond, &o.BurstCount)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select rate limit override %s: %w", userID, err)
	}
	return &o, nil
}

// SetRateLimitOverride sets the override of userID; nil removes it.
func (tx *Tx) SetRateLimitOverride(ctx context.Context, userID string, o *RateLimitOverride) error {
	tx.overridesChanged = true
	var err error
	if o == nil {
		_, err = tx.exec(ctx, `DELETE FROM ratelimit_overrides WHERE user_id = $1`, userID)
	} else {
		_, err = tx.exec(ctx, `
			INSERT INTO ratelimit_overrides (user_id, messages_per_second, burst_count) VALUES ($1, $2, $3)
			ON CONFLICT (user_id) DO UPDATE SET messages_per_second = $2, burst_count = $3`,
			userID, o.MessagesPerSecond, o.BurstCount)
	}
	if err != nil {
		return fmt.Errorf("set rate limit override %s: %w", userID, err)
	}
	return nil
}

// PuppetToken is an access token an admin obtained to act as a user. It belongs to no
// device of the user's: DeviceID only names the session.
type PuppetToken struct {
	UserID       string
	DeviceID     string
	AdminUserID  string
	ValidUntilMS int64 // 0: no expiry
	CreatedTS    int64
}

// InsertPuppetToken stores a puppet token by its hash.
func (tx *Tx) InsertPuppetToken(ctx context.Context, p PuppetToken, tokenHash string) error {
	_, err := tx.exec(ctx, `
		INSERT INTO puppet_tokens (token_hash, user_id, device_id, admin_user_id, valid_until_ms, created_ts)
		VALUES ($1, $2, $3, $4, $5, $6)`, tokenHash, p.UserID, p.DeviceID, p.AdminUserID, p.ValidUntilMS, p.CreatedTS)
	if err != nil {
		return fmt.Errorf("insert puppet token for %s: %w", p.UserID, err)
	}
	return nil
}

// puppetByToken returns the device a puppet token acts as, with the account's flags, or
// ErrNotFound.
func (q *Q) puppetByToken(ctx context.Context, tokenHash string) (*Device, error) {
	var d Device
	err := q.queryRow(ctx, `
		SELECT t.user_id, t.device_id, t.created_ts, t.valid_until_ms,
			COALESCE(a.locked, FALSE), COALESCE(a.suspended, FALSE), COALESCE(a.shadow_banned, FALSE)
		FROM puppet_tokens t LEFT JOIN accounts a ON a.user_id = t.user_id
		WHERE t.token_hash = $1`, tokenHash,
	).Scan(&d.UserID, &d.DeviceID, &d.CreatedTS, &d.ValidUntilMS, &d.Locked, &d.Suspended, &d.ShadowBanned)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select puppet token: %w", err)
	}
	d.Puppet = true
	return &d, nil
}
