package e2e

import "testing"

// TestAdminServerVersion: GET /_synapse/admin/v1/server_version answers anyone (as Synapse
// does); an admin route refuses a missing token with 401 and a non-admin with 403 M_FORBIDDEN.
func TestAdminServerVersion(t *testing.T) {
	srv := StartServer(t)
	r := srv.Do(t, "", "GET", "/_synapse/admin/v1/server_version", nil)
	expectOK(t, r, "server_version")
	if str(r.Body, "server_version") == "" {
		t.Fatalf("server_version: %s", r.Raw)
	}
	admin := srv.RegisterAdmin(t, "root")
	expectOK(t, admin.Do("GET", "/_synapse/admin/v1/server_version", nil), "server_version as admin")
}
