package e2e

import (
	"testing"
)

// threePIDAddrs returns "medium:address" of each threepid of a user object, and the
// added_at of each.
func threePIDAddrs(m map[string]any) ([]string, map[string]float64) {
	var out []string
	added := map[string]float64{}
	for _, v := range m["threepids"].([]any) {
		t := v.(map[string]any)
		k := str(t, "medium") + ":" + str(t, "address")
		out = append(out, k)
		added[k], _ = t["added_at"].(float64)
	}
	return out, added
}

func externalIDs(m map[string]any) []string {
	var out []string
	for _, v := range m["external_ids"].([]any) {
		e := v.(map[string]any)
		out = append(out, str(e, "auth_provider")+":"+str(e, "external_id"))
	}
	return out
}

// TestAdminThreePIDs: an admin binds e-mail addresses, phone numbers and SSO identities to
// accounts with PUT /v2/users, which replaces the lists; GET /v2/users shows them; the two
// lookups find the account; an identifier bound to another account is 409; the user sees
// their threepids in /account/3pid and logs in with an m.id.thirdparty identifier;
// deactivation removes the threepids.
func TestAdminThreePIDs(t *testing.T) {
	srv := StartServer(t)
	admin := srv.RegisterAdmin(t, "root")
	alice := srv.Register(t, "alice")
	bobID := "@bob:" + srv.Name
	usersPath := "/_synapse/admin/v2/users/"

	// Created with both lists: the e-mail address is stored canonical.
	r := admin.Do("PUT", usersPath+esc(bobID), map[string]any{
		"password": "bob password 123",
		"threepids": []any{
			map[string]any{"medium": "email", "address": " Bob@Example.ORG "},
			map[string]any{"medium": "msisdn", "address": "447700900123"},
		},
		"external_ids": []any{map[string]any{"auth_provider": "oidc-corp", "external_id": "u/123@x"}},
	})
	if r.Status != 201 {
		t.Fatalf("create bob: %d %s", r.Status, r.Raw)
	}
	got, added := threePIDAddrs(r.Body)
	checkSameIDs(t, "threepids of the created user", got, []string{"email:bob@example.org", "msisdn:447700900123"})
	checkSameIDs(t, "external_ids of the created user", externalIDs(r.Body), []string{"oidc-corp:u/123@x"})
	for _, v := range r.Body["threepids"].([]any) {
		tp := v.(map[string]any)
		if tp["added_at"].(float64) <= 0 || tp["validated_at"].(float64) <= 0 {
			t.Errorf("threepid without times: %v", tp)
		}
	}
	r = admin.MustDo("GET", usersPath+esc(bobID), nil)
	got, _ = threePIDAddrs(r.Body)
	checkSameIDs(t, "GET threepids", got, []string{"email:bob@example.org", "msisdn:447700900123"})
	checkSameIDs(t, "GET external_ids", externalIDs(r.Body), []string{"oidc-corp:u/123@x"})

	// The lookups; e-mail addresses are matched canonical.
	for _, path := range []string{
		"/_synapse/admin/v1/threepid/email/users/bob%40example.org",
		"/_synapse/admin/v1/threepid/email/users/BOB%40EXAMPLE.ORG",
		"/_synapse/admin/v1/threepid/msisdn/users/447700900123",
		"/_synapse/admin/v1/auth_providers/oidc-corp/users/" + esc("u/123@x"),
	} {
		r = admin.Do("GET", path, nil)
		if r.Status != 200 || str(r.Body, "user_id") != bobID || len(r.Body) != 1 {
			t.Errorf("GET %s: %d %s", path, r.Status, r.Raw)
		}
	}
	for _, path := range []string{
		"/_synapse/admin/v1/threepid/email/users/nobody%40example.org",
		"/_synapse/admin/v1/threepid/fax/users/123",
		"/_synapse/admin/v1/auth_providers/oidc-corp/users/u%2F999",
		"/_synapse/admin/v1/auth_providers/other/users/" + esc("u/123@x"),
	} {
		expectErr(t, admin.Do("GET", path, nil), "GET "+path, 404, "M_NOT_FOUND")
	}

	// Bound to bob: alice cannot have them, and nothing of alice changes.
	r = admin.Do("PUT", usersPath+esc(alice.UserID), map[string]any{"displayname": "Alice A",
		"threepids": []any{map[string]any{"medium": "email", "address": "BOB@example.org"}}})
	expectErr(t, r, "a threepid of another user", 409, "M_THREEPID_IN_USE")
	r = admin.Do("PUT", usersPath+esc(alice.UserID), map[string]any{
		"external_ids": []any{map[string]any{"auth_provider": "oidc-corp", "external_id": "u/123@x"}}})
	expectErr(t, r, "an external ID of another user", 409, "M_UNKNOWN")
	r = admin.MustDo("GET", usersPath+esc(alice.UserID), nil)
	if len(r.Body["threepids"].([]any)) != 0 || len(r.Body["external_ids"].([]any)) != 0 || r.Body["displayname"] == "Alice A" {
		t.Errorf("alice changed by refused PUTs: %s", r.Raw)
	}
	// Nor may a new account take them.
	r = admin.Do("PUT", usersPath+esc("@carol:"+srv.Name), map[string]any{
		"threepids": []any{map[string]any{"medium": "msisdn", "address": "447700900123"}}})
	expectErr(t, r, "a new user with another's threepid", 409, "M_THREEPID_IN_USE")
	expectErr(t, admin.Do("GET", usersPath+esc("@carol:"+srv.Name), nil), "the refused new user", 404, "M_NOT_FOUND")

	// Bad lists.
	for _, bad := range []struct {
		body   map[string]any
		status int
		code   string
	}{
		{map[string]any{"threepids": []any{map[string]any{"medium": "email"}}}, 400, "M_MISSING_PARAM"},
		{map[string]any{"threepids": []any{map[string]any{"address": "a@b.c"}}}, 400, "M_MISSING_PARAM"},
		{map[string]any{"threepids": []any{map[string]any{"medium": "fax", "address": "123"}}}, 400, "M_INVALID_PARAM"},
		{map[string]any{"threepids": []any{map[string]any{"medium": "email", "address": "no-at-sign"}}}, 400, "M_INVALID_PARAM"},
		{map[string]any{"threepids": "email"}, 400, "M_BAD_JSON"},
		{map[string]any{"external_ids": []any{map[string]any{"auth_provider": "x"}}}, 400, "M_MISSING_PARAM"},
		{map[string]any{"external_ids": []any{map[string]any{"external_id": "x"}}}, 400, "M_MISSING_PARAM"},
	} {
		expectErr(t, admin.Do("PUT", usersPath+esc(alice.UserID), bad.body), jsonString(bad.body), bad.status, bad.code)
	}

	// The user's own view, and login with the e-mail address.
	r = anon(t, srv, "POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.thirdparty", "medium": "email", "address": "Bob@example.org"},
		"password":   "bob password 123"})
	if r.Status != 200 || str(r.Body, "user_id") != bobID {
		t.Fatalf("login with m.id.thirdparty: %d %s", r.Status, r.Raw)
	}
	bob3 := &Client{t: t, srv: srv, UserID: bobID, DeviceID: str(r.Body, "device_id"), Token: str(r.Body, "access_token")}
	r = bob3.MustDo("GET", "/_matrix/client/v3/account/3pid", nil)
	got, _ = threePIDAddrs(r.Body)
	checkSameIDs(t, "/account/3pid", got, []string{"email:bob@example.org", "msisdn:447700900123"})
	for _, id := range []map[string]any{
		{"type": "m.id.thirdparty", "medium": "email", "address": "nobody@example.org"},
		{"type": "m.id.thirdparty", "medium": "email", "address": "bob@example.org", "x": 1},
	} {
		pw := "bob password 123"
		if id["x"] != nil {
			pw = "wrong password"
			delete(id, "x")
		}
		r = anon(t, srv, "POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password", "identifier": id, "password": pw})
		expectErr(t, r, "login with "+jsonString(id), 403, "M_FORBIDDEN")
	}
	r = anon(t, srv, "POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.thirdparty", "medium": "email"}, "password": "x"})
	expectErr(t, r, "login with a threepid without address", 400, "M_BAD_JSON")

	// The identifier also serves user-interactive auth, for the account it names only.
	r = anon(t, srv, "POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": "bob"}, "password": "bob password 123"})
	other := str(r.Body, "device_id")
	path := "/_matrix/client/v3/devices/" + esc(other)
	tpAuth := func(medium, address, session string) map[string]any {
		return map[string]any{"auth": map[string]any{"type": "m.login.password", "session": session, "password": "bob password 123",
			"identifier": map[string]any{"type": "m.id.thirdparty", "medium": medium, "address": address}}}
	}
	session := uiaChallenge(bob3, "DELETE", path, map[string]any{})
	expectErr(t, bob3.Do("DELETE", path, tpAuth("email", "nobody@example.org", session)), "UIA with an unknown threepid", 403, "M_FORBIDDEN")
	session = uiaChallenge(bob3, "DELETE", path, map[string]any{})
	expectOK(t, bob3.Do("DELETE", path, tpAuth("email", "BOB@example.org", session)), "UIA with bob's e-mail address")

	// PUT replaces the lists: the kept address keeps its added_at; an absent list stays.
	r = admin.MustDo("PUT", usersPath+esc(bobID), map[string]any{
		"threepids": []any{map[string]any{"medium": "email", "address": "bob@example.org"}, map[string]any{"medium": "email", "address": "robert@example.org"}}})
	got2, added2 := threePIDAddrs(r.Body)
	checkSameIDs(t, "threepids replaced", got2, []string{"email:bob@example.org", "email:robert@example.org"})
	if added2["email:bob@example.org"] != added["email:bob@example.org"] {
		t.Errorf("a kept threepid's added_at moved: %v -> %v", added["email:bob@example.org"], added2["email:bob@example.org"])
	}
	checkSameIDs(t, "external_ids unchanged", externalIDs(r.Body), []string{"oidc-corp:u/123@x"})
	expectErr(t, admin.Do("GET", "/_synapse/admin/v1/threepid/msisdn/users/447700900123", nil), "a removed threepid", 404, "M_NOT_FOUND")
	// Now free, alice may have it.
	admin.MustDo("PUT", usersPath+esc(alice.UserID), map[string]any{
		"threepids":    []any{map[string]any{"medium": "msisdn", "address": "447700900123"}},
		"external_ids": []any{map[string]any{"auth_provider": "oidc-corp", "external_id": "alice"}}})
	r = admin.MustDo("GET", "/_synapse/admin/v1/threepid/msisdn/users/447700900123", nil)
	if str(r.Body, "user_id") != alice.UserID {
		t.Errorf("the freed threepid: %s", r.Raw)
	}
	r = admin.MustDo("PUT", usersPath+esc(bobID), map[string]any{"external_ids": []any{}})
	if len(r.Body["external_ids"].([]any)) != 0 || len(r.Body["threepids"].([]any)) != 2 {
		t.Errorf("external_ids cleared: %s", r.Raw)
	}

	// Deactivation removes the threepids.
	admin.MustDo("POST", "/_synapse/admin/v1/deactivate/"+esc(bobID), map[string]any{})
	expectErr(t, admin.Do("GET", "/_synapse/admin/v1/threepid/email/users/bob%40example.org", nil), "a deactivated user's threepid", 404, "M_NOT_FOUND")
	r = admin.MustDo("GET", usersPath+esc(bobID), nil)
	if len(r.Body["threepids"].([]any)) != 0 {
		t.Errorf("threepids after deactivation: %s", r.Raw)
	}

	// Non-admins may not look anybody up.
	for _, path := range []string{"/_synapse/admin/v1/threepid/msisdn/users/447700900123", "/_synapse/admin/v1/auth_providers/oidc-corp/users/alice"} {
		expectErr(t, alice.Do("GET", path, nil), "non-admin GET "+path, 403, "M_FORBIDDEN")
	}
}
