package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// withRegistrationMode sets registration.mode (generate-config's --registration).
func withRegistrationMode(mode string) ServerOption {
	return func(args []string) []string {
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "--registration" {
				args[i+1] = mode
			}
		}
		return args
	}
}

// registerWithToken registers localpart with the m.login.registration_token stage.
func registerWithToken(t *testing.T, srv *Server, localpart, token string) Resp {
	t.Helper()
	return anon(t, srv, "POST", "/_matrix/client/v3/register", map[string]any{
		"username": localpart, "password": "correct horse battery",
		"auth": map[string]any{"type": "m.login.registration_token", "token": token},
	})
}

// TestAdminRegistrationTokens: tokens made with /_synapse/admin/v1/registration_tokens admit
// registrations through the m.login.registration_token stage, exactly uses_allowed of them
// even when registrations race; the spec's validity check follows them; the admin API creates,
// lists (valid=), updates and deletes them with Synapse's token objects.
func TestAdminRegistrationTokens(t *testing.T) {
	srv := StartServer(t, withRegistrationMode("token"))
	admin := srv.RegisterAdmin(t, "root")
	const base = "/_synapse/admin/v1/registration_tokens"

	// Creation: defaults, explicit fields, bad input.
	r := call(admin, "POST", base+"/new", map[string]any{})
	expectOK(t, r, "new with defaults")
	if len(str(r.Body, "token")) != 16 || r.Body["uses_allowed"] != nil || r.Body["expiry_time"] != nil || r.Body["pending"] != float64(0) || r.Body["completed"] != float64(0) {
		t.Errorf("new with defaults: %s", r.Raw)
	}
	if r := call(admin, "POST", base+"/new", map[string]any{"length": 5}); len(str(r.Body, "token")) != 5 {
		t.Errorf("new with length: %s", r.Raw)
	}
	r = call(admin, "POST", base+"/new", map[string]any{"token": "five", "uses_allowed": 5})
	if str(r.Body, "token") != "five" || r.Body["uses_allowed"] != float64(5) {
		t.Fatalf("new five: %s", r.Raw)
	}
	for _, body := range []map[string]any{
		{"token": "five"}, {"token": "has space"}, {"token": ""}, {"uses_allowed": -1}, {"uses_allowed": 1.5},
		{"uses_allowed": "3"}, {"length": 0}, {"length": 65}, {"expiry_time": 1000},
	} {
		expectErr(t, call(admin, "POST", base+"/new", body), fmt.Sprintf("new %v", body), 400, "M_INVALID_PARAM")
	}

	// Validity before use; 20 racing registrations with a token of 5 uses: exactly 5 succeed.
	valid := func(token string) any {
		r := anon(t, srv, "GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token="+token, nil)
		expectOK(t, r, "validity "+token)
		return r.Body["valid"]
	}
	if valid("five") != true || valid("nope") != false {
		t.Errorf("validity before use")
	}
	var wg sync.WaitGroup
	statuses := make([]int, 20)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = registerWithToken(t, srv, fmt.Sprintf("racer%d", i), "five").Status
		}()
	}
	wg.Wait()
	ok := 0
	for _, st := range statuses {
		switch st {
		case 200:
			ok++
		case 401:
		default:
			t.Errorf("racing registration: status %d", st)
		}
	}
	if ok != 5 {
		t.Errorf("%d registrations succeeded with a token of 5 uses, want 5 (%v)", ok, statuses)
	}
	r = call(admin, "GET", base+"/five", nil)
	if r.Body["completed"] != float64(5) || r.Body["pending"] != float64(0) {
		t.Errorf("five after the race: %s", r.Raw)
	}
	if valid("five") != false {
		t.Errorf("a used-up token is still valid")
	}
	r = registerWithToken(t, srv, "late", "five")
	expectErr(t, r, "used-up token", 401, "M_FORBIDDEN")
	if r.Body["flows"] == nil {
		t.Errorf("a failed stage answers the flows again: %s", r.Raw)
	}
	// A taken user name does not use up the token.
	call(admin, "POST", base+"/new", map[string]any{"token": "one", "uses_allowed": 1})
	expectErr(t, registerWithToken(t, srv, "root", "one"), "taken name", 400, "M_USER_IN_USE")
	if r := call(admin, "GET", base+"/one", nil); r.Body["pending"] != float64(0) || r.Body["completed"] != float64(0) {
		t.Errorf("one after a failed registration: %s", r.Raw)
	}
	expectOK(t, registerWithToken(t, srv, "single", "one"), "register with one")

	// Listing with valid=.
	count := func(q string) int {
		r := call(admin, "GET", base+q, nil)
		expectOK(t, r, "list "+q)
		return len(list(r.Body, "registration_tokens"))
	}
	if all, v, inv := count(""), count("?valid=true"), count("?valid=false"); all != 4 || v != 2 || inv != 2 {
		t.Errorf("list: all %d, valid %d, invalid %d; want 4, 2, 2", all, v, inv)
	}
	expectErr(t, call(admin, "GET", base+"?valid=maybe", nil), "bad valid", 400, "M_INVALID_PARAM")

	// Update: more uses, then an expiry; omitted fields are kept, null clears.
	r = call(admin, "PUT", base+"/five", map[string]any{"uses_allowed": 6})
	if r.Body["uses_allowed"] != float64(6) || r.Body["completed"] != float64(5) {
		t.Errorf("update uses: %s", r.Raw)
	}
	if valid("five") != true {
		t.Errorf("five with a use left is not valid")
	}
	expiry := time.Now().Add(time.Hour).UnixMilli()
	r = call(admin, "PUT", base+"/five", map[string]any{"expiry_time": expiry})
	if r.Body["uses_allowed"] != float64(6) || r.Body["expiry_time"] != float64(expiry) {
		t.Errorf("update expiry: %s", r.Raw)
	}
	r = call(admin, "PUT", base+"/five", map[string]any{"uses_allowed": nil})
	if r.Body["uses_allowed"] != nil || r.Body["expiry_time"] != float64(expiry) {
		t.Errorf("update to unlimited: %s", r.Raw)
	}
	expectErr(t, call(admin, "PUT", base+"/five", map[string]any{"expiry_time": 1}), "expiry in the past", 400, "M_INVALID_PARAM")
	expectErr(t, call(admin, "PUT", base+"/nope", map[string]any{}), "update unknown", 404, "M_NOT_FOUND")
	expectErr(t, call(admin, "GET", base+"/nope", nil), "get unknown", 404, "M_NOT_FOUND")

	// Non-admins are refused.
	user := srv.Login(t, "single")
	for _, rt := range [][2]string{
		{"GET", base}, {"POST", base + "/new"}, {"GET", base + "/five"}, {"PUT", base + "/five"}, {"DELETE", base + "/five"},
	} {
		expectErr(t, call(user, rt[0], rt[1], map[string]any{}), "non-admin "+rt[0]+" "+rt[1], 403, "M_FORBIDDEN")
	}

	// Delete.
	expectOK(t, call(admin, "DELETE", base+"/five", nil), "delete")
	expectErr(t, call(admin, "DELETE", base+"/five", nil), "delete again", 404, "M_NOT_FOUND")
	if valid("five") != false {
		t.Errorf("a deleted token is still valid")
	}
	expectErr(t, registerWithToken(t, srv, "after", "five"), "deleted token", 401, "M_FORBIDDEN")
	expectErr(t, registerWithToken(t, srv, "empty", ""), "empty token", 401, "M_FORBIDDEN")

	// The config's static tokens keep working beside the database's, without a use count.
	srv.editConfig(t, "  tokens: []", `  tokens: ["static-one"]`)
	srv.Stop()
	srv.Start()
	expectOK(t, registerWithToken(t, srv, "static1", "static-one"), "static token")
	expectOK(t, registerWithToken(t, srv, "static2", "static-one"), "static token again")
	if valid("static-one") != true {
		t.Errorf("a static token is not valid")
	}
}

// TestRegistrationTokenValidityNeedsTokenMode: the validity check answers 403 M_FORBIDDEN when
// registration does not take tokens.
func TestRegistrationTokenValidityNeedsTokenMode(t *testing.T) {
	srv := StartServer(t)
	expectErr(t, anon(t, srv, "GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=x", nil), "validity in open mode", 403, "M_FORBIDDEN")
}
