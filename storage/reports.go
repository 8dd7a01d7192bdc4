package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// ReportRow is a stored report as the admin API lists it: the report and, for an event
// report, the sender of the reported event ("" when the event is not stored).
type ReportRow struct {
	ID          int64
	Reporter    string
	RoomID      string
	EventID     string
	UserID      string
	Reason      string
	Score       *int64
	TS          int64
	EventSender string
}

// ReportFilter selects reports for ReportsPage. Kind is "event" (reports with an event ID),
// "room" (reports of a room, no event) or "user". Reporter and RoomID match substrings, as
// Synapse's admin API does (written with replace, which both dialects share and which, unlike
// LIKE, is case-sensitive in both); Sender matches the reported event's sender exactly.
type ReportFilter struct {
	Kind     string
	Reporter string
	RoomID   string
	Sender   string
	Forwards bool  // oldest first; else newest first
	BeforeID int64 // when not 0, only reports with a smaller ID
}

const reportColumns = `r.report_id, r.reporter, r.room_id, r.event_id, r.user_id, r.reason, r.score, r.created_ts, COALESCE(e.sender, '')`

func (f ReportFilter) where() (string, []any) {
	var conds []string
	var args []any
	switch f.Kind {
	case "event":
		conds = append(conds, "r.event_id <> ''")
	case "room":
		conds = append(conds, "r.event_id = '' AND r.room_id <> ''")
	case "user":
		conds = append(conds, "r.user_id <> ''")
	}
	add := func(cond, v string) {
		args = append(args, v)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	if f.Reporter != "" {
		add("replace(r.reporter, $%d, '') <> r.reporter", f.Reporter)
	}
	if f.RoomID != "" {
		add("replace(r.room_id, $%d, '') <> r.room_id", f.RoomID)
	}
	if f.Sender != "" {
		add("e.sender = $%d", f.Sender)
	}
	if f.BeforeID != 0 {
		args = append(args, f.BeforeID)
		conds = append(conds, fmt.Sprintf("r.report_id < $%d", len(args)))
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// ReportsPage returns limit reports matching f from offset from, and how many match in all
// (BeforeID left aside).
func (q *Q) ReportsPage(ctx context.Context, f ReportFilter, from, limit int) ([]ReportRow, int, error) {
	const join = ` FROM reports r LEFT JOIN events e ON e.event_id = r.event_id AND r.event_id <> ''`
	all := f
	all.BeforeID = 0
	where, args := all.where()
	var total int
	if err := q.queryRow(ctx, `SELECT COUNT(*)`+join+where, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count reports: %w", err)
	}
	where, args = f.where()
	base := join + where
	order := " ORDER BY r.report_id DESC"
	if f.Forwards {
		order = " ORDER BY r.report_id ASC"
	}
	args = append(args, limit, from)
	rows, err := q.query(ctx, `SELECT `+reportColumns+base+order+fmt.Sprintf(" LIMIT $%d OFFSET $%d", len(args)-1, len(args)), args...)
	if err != nil {
		return nil, 0, fmt.Errorf("select reports: %w", err)
	}
	defer rows.Close()
	var out []ReportRow
	for rows.Next() {
		r, err := scanReport(rows)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, r)
	}
	return out, total, rows.Err()
}

func scanReport(row interface{ Scan(...any) error }) (ReportRow, error) {
	var r ReportRow
	var score sql.NullInt64
	err := row.Scan(&r.ID, &r.Reporter, &r.RoomID, &r.EventID, &r.UserID, &r.Reason, &score, &r.TS, &r.EventSender)
	if score.Valid {
		r.Score = &score.Int64
	}
	return r, err
}

// ReportByID returns one report, or ErrNotFound.
func (q *Q) ReportByID(ctx context.Context, id int64) (ReportRow, error) {
	r, err := scanReport(q.queryRow(ctx, `SELECT `+reportColumns+`
		FROM reports r LEFT JOIN events e ON e.event_id = r.event_id AND r.event_id <> ''
		WHERE r.report_id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrNotFound
	} else if err != nil {
		return r, fmt.Errorf("select report %d: %w", id, err)
	}
	return r, nil
}

// DeleteReport deletes one report; ErrNotFound if there is none with that ID.
func (tx *Tx) DeleteReport(ctx context.Context, id int64) error {
	res, err := tx.exec(ctx, `DELETE FROM reports WHERE report_id = $1`, id)
	if err != nil {
		return fmt.Errorf("delete report %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}
