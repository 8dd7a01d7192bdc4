package e2e

import "testing"

// TestAdminBackgroundUpdates: the background jobs status of an idle server, the enabled
// switch, and both routes refused to non-admins.
func TestAdminBackgroundUpdates(t *testing.T) {
	srv := StartServer(t)
	admin := srv.RegisterAdmin(t, "root")
	alice := srv.Register(t, "alice")
	const status, enabled = "/_synapse/admin/v1/background_updates/status", "/_synapse/admin/v1/background_updates/enabled"

	r := admin.MustDo("GET", status, nil)
	if r.Body["enabled"] != true || len(obj(r.Body, "current_updates")) != 0 || len(r.Body) != 2 {
		t.Errorf("idle status: %s", r.Raw)
	}
	r = admin.MustDo("POST", enabled, map[string]any{"enabled": false})
	if r.Body["enabled"] != false {
		t.Errorf("disable: %s", r.Raw)
	}
	if r = admin.MustDo("GET", status, nil); r.Body["enabled"] != false {
		t.Errorf("status once disabled: %s", r.Raw)
	}
	admin.MustDo("POST", enabled, map[string]any{"enabled": true})
	if r = admin.MustDo("GET", status, nil); r.Body["enabled"] != true {
		t.Errorf("status once enabled again: %s", r.Raw)
	}
	expectErr(t, admin.Do("POST", enabled, map[string]any{"enabled": "yes"}), "enabled not a boolean", 400, "M_INVALID_PARAM")
	expectErr(t, alice.Do("GET", status, nil), "status by a non-admin", 403, "M_FORBIDDEN")
	expectErr(t, alice.Do("POST", enabled, map[string]any{"enabled": false}), "enabled by a non-admin", 403, "M_FORBIDDEN")
}
