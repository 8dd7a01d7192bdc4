package adminapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// Reports that users file (spec: POST /rooms/{roomId}/report/{eventId} and
// POST /rooms/{roomId}/report): Synapse's event_reports.md and room_reports.md. Synapse has
// no admin listing of user reports, so there is none here either.
func (s *Server) reportRoutes() []route {
	return []route{
		{http.MethodGet, "/v1/event_reports", s.handleListEventReports, false},
		{http.MethodGet, "/v1/event_reports/{reportId}", s.handleGetEventReport, false},
		{http.MethodDelete, "/v1/event_reports/{reportId}", s.handleDeleteEventReport, false},
		{http.MethodGet, "/v1/room_reports", s.handleListRoomReports, false},
		{http.MethodGet, "/v1/room_reports/{reportId}", s.handleGetRoomReport, false},
	}
}

// handleListEventReports handles GET /v1/event_reports (from, limit, dir, user_id, room_id,
// sender_user_id).
func (s *Server) handleListEventReports(r *http.Request) (any, error) {
	from, limit, err := page(r, 100)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	f := storage.ReportFilter{Kind: "event", Reporter: q.Get("user_id"), RoomID: q.Get("room_id"), Sender: q.Get("sender_user_id")}
	if f.Sender == "" {
		f.Sender = q.Get("event_sender_user_id")
	}
	switch q.Get("dir") {
	case "", "b":
	case "f":
		f.Forwards = true
	default:
		return nil, spec.InvalidParam("dir must be f or b")
	}
	rows, total, err := s.db.ReportsPage(r.Context(), f, from, limit)
	if err != nil {
		return nil, err
	}
	reports := make([]map[string]any, 0, len(rows))
	for _, row := range rows {
		rep, err := s.eventReport(r, row)
		if err != nil {
			return nil, err
		}
		reports = append(reports, rep)
	}
	resp := map[string]any{"event_reports": reports, "total": total}
	if from+limit < total {
		resp["next_token"] = from + len(rows) // an integer, as Synapse sends it
	}
	return resp, nil
}

// eventReport is the JSON of an event report, with the room's name and canonical alias.
func (s *Server) eventReport(r *http.Request, row storage.ReportRow) (map[string]any, error) {
	name, alias, _, err := s.reportedRoomInfo(r, row.RoomID)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"id": row.ID, "received_ts": row.TS, "room_id": row.RoomID, "name": name,
		"event_id": row.EventID, "user_id": row.Reporter, "reason": row.Reason, "score": row.Score,
		"sender": row.EventSender, "canonical_alias": alias,
	}, nil
}

// reportedRoomInfo returns the current name, canonical alias and topic of a room (nil where
// unset or the room is unknown).
func (s *Server) reportedRoomInfo(r *http.Request, roomID string) (name, alias, topic any, err error) {
	room, err := s.db.Room(r.Context(), roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil, nil, nil
	} else if err != nil {
		return nil, nil, nil, err
	}
	field := func(evType, key string) (any, error) {
		ev, err := s.db.CurrentStateEvent(r.Context(), room.NID, storage.StateKey{Type: evType})
		if errors.Is(err, storage.ErrNotFound) {
			return nil, nil
		} else if err != nil {
			return nil, err
		}
		var pdu struct {
			Content map[string]any `json:"content"`
		}
		if json.Unmarshal(ev.JSON, &pdu) != nil {
			return nil, nil
		}
		if v, ok := pdu.Content[key].(string); ok {
			return v, nil
		}
		return nil, nil
	}
	if name, err = field("m.room.name", "name"); err != nil {
		return nil, nil, nil, err
	}
	if alias, err = field("m.room.canonical_alias", "alias"); err != nil {
		return nil, nil, nil, err
	}
	if topic, err = field("m.room.topic", "topic"); err != nil {
		return nil, nil, nil, err
	}
	return name, alias, topic, nil
}

// reportID parses the {reportId} path variable: 400 M_INVALID_PARAM unless a non-negative integer.
func reportID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(httputil.PathVar(r, "reportId"), 10, 64)
	if err != nil || id < 0 {
		return 0, spec.InvalidParam("the report_id parameter must be a string representing a positive integer")
	}
	return id, nil
}

// report returns the report {reportId} of the kind wanted, or 404 M_NOT_FOUND.
func (s *Server) report(r *http.Request, kind string) (storage.ReportRow, error) {
	id, err := reportID(r)
	if err != nil {
		return storage.ReportRow{}, err
	}
	row, err := s.db.ReportByID(r.Context(), id)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return row, err
	}
	isEvent := row.EventID != ""
	isRoom := row.EventID == "" && row.RoomID != ""
	if err != nil || kind == "event" && !isEvent || kind == "room" && !isRoom {
		return storage.ReportRow{}, spec.NotFound(kind + " report not found")
	}
	return row, nil
}

// handleGetEventReport handles GET /v1/event_reports/{reportId}: the report and the event.
func (s *Server) handleGetEventReport(r *http.Request) (any, error) {
	row, err := s.report(r, "event")
	if err != nil {
		return nil, err
	}
	rep, err := s.eventReport(r, row)
	if err != nil {
		return nil, err
	}
	rep["event_json"] = nil
	if ev, err := s.db.Event(r.Context(), row.EventID); err == nil {
		rep["event_json"] = json.RawMessage(ev.JSON)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	return rep, nil
}

// handleDeleteEventReport handles DELETE /v1/event_reports/{reportId}.
func (s *Server) handleDeleteEventReport(r *http.Request) (any, error) {
	row, err := s.report(r, "event")
	if err != nil {
		return nil, err
	}
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error { return tx.DeleteReport(r.Context(), row.ID) })
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("event report not found")
	} else if err != nil {
		return nil, err
	}
	s.audit(r, "delete event report", "report_id", row.ID, "room_id", row.RoomID, "event_id", row.EventID)
	return struct{}{}, nil
}

// handleListRoomReports handles GET /v1/room_reports (from: a report ID to continue below,
// limit, user_id, room_id), newest first; next_batch is where the next page starts.
func (s *Server) handleListRoomReports(r *http.Request) (any, error) {
	_, limit, err := page(r, 100)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	f := storage.ReportFilter{Kind: "room", Reporter: q.Get("user_id"), RoomID: q.Get("room_id")}
	if v := q.Get("from"); v != "" {
		f.BeforeID, _ = strconv.ParseInt(v, 10, 64) // page checked it
	}
	rows, total, err := s.db.ReportsPage(r.Context(), f, 0, limit+1)
	if err != nil {
		return nil, err
	}
	resp := map[string]any{"total": total}
	if len(rows) > limit {
		rows = rows[:limit]
		resp["next_batch"] = rows[len(rows)-1].ID
	}
	reports := make([]map[string]any, 0, len(rows))
	for _, row := range rows {
		rep, err := s.roomReport(r, row)
		if err != nil {
			return nil, err
		}
		reports = append(reports, rep)
	}
	resp["room_reports"] = reports
	return resp, nil
}

func (s *Server) roomReport(r *http.Request, row storage.ReportRow) (map[string]any, error) {
	name, alias, topic, err := s.reportedRoomInfo(r, row.RoomID)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"id": row.ID, "received_ts": row.TS, "room_id": row.RoomID, "user_id": row.Reporter,
		"reason": row.Reason, "canonical_alias": alias, "name": name, "topic": topic,
	}, nil
}

// handleGetRoomReport handles GET /v1/room_reports/{reportId}.
func (s *Server) handleGetRoomReport(r *http.Request) (any, error) {
	row, err := s.report(r, "room")
	if err != nil {
		return nil, err
	}
	return s.roomReport(r, row)
}
