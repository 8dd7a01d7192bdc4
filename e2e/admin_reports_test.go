package e2e

import (
	"fmt"
	"testing"
)

// TestAdminEventReports: reports filed with POST /rooms/{roomId}/report/{eventId} are listed by
// GET /_synapse/admin/v1/event_reports with Synapse's fields, filters and paging, shown one by
// one with the event, and deleted; room reports are listed by /v1/room_reports.
func TestAdminEventReports(t *testing.T) {
	srv := StartServer(t)
	admin := srv.RegisterAdmin(t, "root")
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Reported room", "room_alias_name": "reported"})
	join(bob, room)
	var evs []string
	for i := 0; i < 3; i++ {
		evs = append(evs, alice.Send(room, fmt.Sprintf("bad %d", i)))
	}
	own := bob.Send(room, "bob's own")
	for i, ev := range evs {
		expectOK(t, call(bob, "POST", "/_matrix/client/v3/rooms/"+esc(room)+"/report/"+esc(ev), map[string]any{"reason": fmt.Sprintf("r%d", i), "score": -100}), "report")
	}
	expectOK(t, call(alice, "POST", "/_matrix/client/v3/rooms/"+esc(room)+"/report/"+esc(own), map[string]any{"reason": "mine"}), "report by alice")
	expectOK(t, call(alice, "POST", "/_matrix/client/v3/rooms/"+esc(room)+"/report", map[string]any{"reason": "room spam"}), "room report")

	r := call(admin, "GET", "/_synapse/admin/v1/event_reports", nil)
	expectOK(t, r, "list")
	reps := list(r.Body, "event_reports")
	if len(reps) != 4 || r.Body["total"] != float64(4) || r.Body["next_token"] != nil {
		t.Fatalf("list: %s", r.Raw)
	}
	newest := reps[0]
	if str(newest, "event_id") != own || str(newest, "user_id") != alice.UserID || str(newest, "sender") != bob.UserID ||
		str(newest, "room_id") != room || str(newest, "name") != "Reported room" || str(newest, "canonical_alias") != "#reported:"+srv.Name ||
		str(newest, "reason") != "mine" || newest["score"] != nil || newest["received_ts"] == nil || newest["id"] == nil {
		t.Errorf("newest report: %v", newest)
	}
	if reps[3]["score"] != float64(-100) || str(reps[3], "event_id") != evs[0] {
		t.Errorf("oldest report: %v", reps[3])
	}

	// Paging, direction and filters.
	r = call(admin, "GET", "/_synapse/admin/v1/event_reports?limit=3&dir=f", nil)
	if len(list(r.Body, "event_reports")) != 3 || r.Body["next_token"] != float64(3) || str(list(r.Body, "event_reports")[0], "event_id") != evs[0] {
		t.Errorf("page 1: %s", r.Raw)
	}
	r = call(admin, "GET", "/_synapse/admin/v1/event_reports?limit=3&dir=f&from=3", nil)
	if len(list(r.Body, "event_reports")) != 1 || r.Body["next_token"] != nil {
		t.Errorf("page 2: %s", r.Raw)
	}
	r = call(admin, "GET", "/_synapse/admin/v1/event_reports?user_id=bob", nil)
	if r.Body["total"] != float64(3) {
		t.Errorf("user_id filter: %s", r.Raw)
	}
	r = call(admin, "GET", "/_synapse/admin/v1/event_reports?sender_user_id="+esc(bob.UserID), nil)
	if r.Body["total"] != float64(1) {
		t.Errorf("sender_user_id filter: %s", r.Raw)
	}
	r = call(admin, "GET", "/_synapse/admin/v1/event_reports?room_id="+esc("!nope"), nil)
	if r.Body["total"] != float64(0) || len(list(r.Body, "event_reports")) != 0 {
		t.Errorf("room_id filter: %s", r.Raw)
	}
	expectErr(t, call(admin, "GET", "/_synapse/admin/v1/event_reports?dir=x", nil), "bad dir", 400, "M_INVALID_PARAM")
	expectErr(t, call(admin, "GET", "/_synapse/admin/v1/event_reports?from=-1", nil), "bad from", 400, "M_INVALID_PARAM")

	// One report, with the event.
	id := fmt.Sprint(int64(newest["id"].(float64)))
	r = call(admin, "GET", "/_synapse/admin/v1/event_reports/"+id, nil)
	expectOK(t, r, "details")
	if str(obj(r.Body, "event_json", "content"), "body") != "bob's own" || str(r.Body, "event_id") != own {
		t.Errorf("details: %s", r.Raw)
	}
	expectErr(t, call(admin, "GET", "/_synapse/admin/v1/event_reports/abc", nil), "bad id", 400, "M_INVALID_PARAM")
	expectErr(t, call(admin, "GET", "/_synapse/admin/v1/event_reports/99999", nil), "unknown id", 404, "M_NOT_FOUND")

	// Room reports.
	r = call(admin, "GET", "/_synapse/admin/v1/room_reports", nil)
	rr := list(r.Body, "room_reports")
	if len(rr) != 1 || r.Body["total"] != float64(1) || str(rr[0], "reason") != "room spam" || str(rr[0], "user_id") != alice.UserID || str(rr[0], "name") != "Reported room" {
		t.Errorf("room reports: %s", r.Raw)
	}
	roomReportID := fmt.Sprint(int64(rr[0]["id"].(float64)))
	expectOK(t, call(admin, "GET", "/_synapse/admin/v1/room_reports/"+roomReportID, nil), "room report")
	expectErr(t, call(admin, "GET", "/_synapse/admin/v1/event_reports/"+roomReportID, nil), "room report as event report", 404, "M_NOT_FOUND")

	// Non-admins are refused everywhere.
	for _, rt := range [][2]string{
		{"GET", "/_synapse/admin/v1/event_reports"}, {"GET", "/_synapse/admin/v1/event_reports/" + id},
		{"DELETE", "/_synapse/admin/v1/event_reports/" + id}, {"GET", "/_synapse/admin/v1/room_reports"},
		{"GET", "/_synapse/admin/v1/room_reports/" + roomReportID},
	} {
		expectErr(t, call(bob, rt[0], rt[1], nil), "non-admin "+rt[0]+" "+rt[1], 403, "M_FORBIDDEN")
	}

	// Delete.
	expectOK(t, call(admin, "DELETE", "/_synapse/admin/v1/event_reports/"+id, nil), "delete")
	expectErr(t, call(admin, "GET", "/_synapse/admin/v1/event_reports/"+id, nil), "deleted", 404, "M_NOT_FOUND")
	expectErr(t, call(admin, "DELETE", "/_synapse/admin/v1/event_reports/"+id, nil), "deleted again", 404, "M_NOT_FOUND")
	if r := call(admin, "GET", "/_synapse/admin/v1/event_reports", nil); r.Body["total"] != float64(3) {
		t.Errorf("after delete: %s", r.Raw)
	}
}
