package e2e

// What synadm 0.38 (Debian's package; read from /usr/lib/python3/dist-packages/synadm) sends
// and reads, for the admin API to answer exactly as Synapse does.
//
// General:
//   - Every admin call is METHOD {base_url}{admin_path}/{urlpart} with "Authorization: Bearer
//     {token}" and "Accept: application/json"; a body is sent as JSON (requests' json=), query
//     parameters whose value is None are left out, but empty strings are sent ("name=").
//   - User IDs, room IDs, media IDs and tokens are put into the path as they are, NOT
//     percent-encoded: /v2/users/@alice:example.org, /v1/rooms/!abc:example.org/members.
//     The router must accept raw "@", ":" and "!" in path segments.
//   - synadm parses every response body as JSON whatever the status (a non-JSON body, e.g.
//     a plain-text 404 or 405, makes it print "... could not be fetched" and exit 1); with
//     `--output json` it prints the whole response as one JSON line. It exits 0 on HTTP
//     errors: tests must check the printed JSON, not the exit status.
//   - Commands taking a user accept a localpart: synadm builds "@{localpart}:{homeserver}"
//     from its "homeserver" setting (the tests set it, so no federation key lookup happens).
//     Media quarantine/delete by ID without --server-name use the same homeserver name.
//
// Users:
//   user list [-f FROM] [-l LIMIT] [-g/-G] [-d] [-n NAME] [-i USER_ID]
//     GET /_synapse/admin/v2/users?from=0&limit=100[&guests=true|false][&deactivated=true]
//         [&name=NAME][&user_id=@u:hs]
//     from is sent as an integer offset (0 by default) and then as the next_token string
//     the server returned. `notice send --regex` calls it with name="" and user_id=""
//     (present but empty: must mean "no filter").
//     Reads: total (int), users (list), next_token (present only when there is more);
//     notice --regex reads users[].name and next_token.
//   user details USER
//     GET /_synapse/admin/v2/users/{user_id}  -> the user object (printed as is).
//   user modify USER [-P PASSWORD] [-n DISPLAYNAME] [-t MEDIUM ADDRESS]... [-v AVATAR_URL]
//                    [-a/-u] [--activate|--deactivate]
//     first GET /v2/users/{user_id} (printed; for a new user the 404 JSON is printed), then
//     PUT /_synapse/admin/v2/users/{user_id} with only the given keys of
//       {"password", "displayname", "threepids": [{"medium","address"}], "avatar_url",
//        "admin": true (only true is ever sent: --no-admin sends nothing), "deactivated": bool}
//     Creates the user when missing (201) or updates it (200); the response (user object) is
//     printed.
//   user deactivate USER [-e]
//     first GET /v2/users/{user_id} and GET /v1/users/{user_id}/joined_rooms (reads total,
//     joined_rooms) and, for each joined room (default --aliases), the CLIENT API
//     GET /_matrix/client/r0/rooms/{room_id}/aliases with the admin's token, reading
//     "aliases" (a KeyError crash if it is missing: the admin must be allowed to read the
//     aliases of rooms it is not in, as Synapse allows server admins); then
//     POST /_synapse/admin/v1/deactivate/{user_id} {"erase": false|true}
//     Reads (human output): id_server_unbind_result == "success".
//   user membership USER [--aliases/--ids]
//     GET /_synapse/admin/v1/users/{user_id}/joined_rooms -> {"joined_rooms": [...], "total": n}
//     (and the aliases lookups above unless --ids).
//   user password USER -p PASSWORD [-n]
//     POST /_synapse/admin/v1/reset_password/{user_id} {"new_password": P} plus
//     "logout_devices": false with -n (absent otherwise: the default logs out). Human output
//     expects {} for success.
//   user whois USER
//     GET /_synapse/admin/v1/whois/{user_id}  -> printed as is (Synapse: {"user_id",
//     "devices": {"": {"sessions": [{"connections": [{"ip","last_seen","user_agent"}]}]}}}).
//   user login USER [-d DAYS | --expire DATE | --expire-ts MS | --expire-never]
//     POST /_synapse/admin/v1/users/{user_id}/login  {} with --expire-never, else
//     {"valid_until_ms": ms} (default: now + 1 day)  -> {"access_token": "..."} printed.
//   user media USER (= media list -u USER) [-f] [-l] [-s ORDER_BY] [-R] [--ts]
//     GET /_synapse/admin/v1/users/{user_id}/media?from=0&limit=100[&order_by=F][&dir=b]
//     Reads: total, media, next_token; with the default --datetime it rewrites
//     media[].created_ts and media[].last_access_ts (both read as keys: they must be
//     present, null allowed).
//
// Rooms:
//   room list [-f] [-l] [-n NAME] [-s ORDER_BY] [-r]
//     GET /_synapse/admin/v1/rooms?from=0&limit=100[&search_term=NAME][&order_by=F][&dir=b]
//     Reads (human): total_rooms, rooms, next_batch. `room power-levels` also reads
//     rooms[].room_id and deletes the keys creator, encryption, federatable, guest_access,
//     history_visibility, join_rules, joined_local_members, joined_members, public,
//     state_events, version from each room (all must be present).
//   room details ROOM_ID
//     GET /_synapse/admin/v1/rooms/{room_id}  -> printed as is.
//   room members ROOM_ID
//     GET /_synapse/admin/v1/rooms/{room_id}/members  -> reads total, members.
//   room state ROOM_ID
//     GET /_synapse/admin/v1/rooms/{room_id}/state  -> {"state": [events]}; power-levels
//     reads state[].type and, for m.room.power_levels, content.users.
//   room delete ROOM_ID [-u NEW_ROOM_USER_ID] [-n ROOM_NAME] [-m MESSAGE] [-b] [--no-purge]
//     first room details and room members (both printed), then
//     DELETE /_synapse/admin/v1/rooms/{room_id} with body {"block": bool, "purge": bool}
//     plus new_room_user_id, room_name, message only when given. Printed as is (Synapse v1:
//     {"kicked_users", "failed_to_kick_users", "local_aliases", "new_room_id"}).
//     There is no separate "room block" command in 0.38: blocking is `room delete -b`.
//   room join ROOM USER      POST /_synapse/admin/v1/join/{room_id_or_alias} {"user_id"}
//   room make-admin ROOM [-u USER]  POST /_synapse/admin/v1/rooms/{room_id}/make_room_admin
//
// Media:
//   media list -r ROOM_ID   GET /_synapse/admin/v1/room/{room_id}/media  (note: "room",
//     singular) -> printed as is (Synapse: {"local": [mxc URIs], "remote": [...]}).
//   media list -u USER      as user media above.
//   media quarantine -i MEDIA_ID [-s SERVER_NAME]
//     POST /_synapse/admin/v1/media/quarantine/{server_name}/{media_id} with body {}
//   media quarantine -r ROOM_ID   POST /_synapse/admin/v1/room/{room_id}/media/quarantine {}
//   media quarantine -u USER      POST /_synapse/admin/v1/user/{user_id}/media/quarantine {}
//     Printed as is (Synapse: {} for one item, {"num_quarantined": n} for room and user).
//   media protect MEDIA_ID  POST /_synapse/admin/v1/media/protect/{media_id} {}
//   media delete -i MEDIA_ID
//     DELETE /_synapse/admin/v1/media/{server_name}/{media_id} with body {}
//     -> Synapse: {"deleted_media": [media_id], "total": 1}
//   media delete (-d DAYS | -b DATE | -t TS) [--size KIB] [--delete-profiles]
//     POST /_synapse/admin/v1/media/{server_name}/delete?server_name=S&before_ts=MS
//          [&size_gt=BYTES][&keep_profiles=false]  with body {}
//     (server_name is both in the path and the query) -> {"deleted_media": [...], "total": n}
//   media purge (-d|-b|-t)  POST /_synapse/admin/v1/purge_media_cache?before_ts=MS  {}
//
// Registration tokens:
//   regtok list [-v/-V] [--ts]
//     GET /_synapse/admin/v1/registration_tokens[?valid=true|false]
//     Reads: registration_tokens (when missing, the response is printed as an error); with
//     the default --datetime, registration_tokens[].expiry_time (key must be present, null
//     allowed).
//   regtok details TOKEN   GET /_synapse/admin/v1/registration_tokens/{token}; reads
//     expiry_time via .get.
//   regtok new [-n TOKEN] [-l LENGTH] [-u USES] [-t EXPIRY_TS | -e DATE]
//     POST /_synapse/admin/v1/registration_tokens/new
//       {"length": 16, "uses_allowed": null|n, "expiry_time": null|ms[, "token": T]}
//     length is ALWAYS sent (default 16), also together with token; uses_allowed and
//     expiry_time are sent as null when not given. Printed as is (the token object:
//     token, uses_allowed, pending, completed, expiry_time).
//   regtok update TOKEN [-u USES] [-t EXPIRY_TS | -e DATE]
//     PUT /_synapse/admin/v1/registration_tokens/{token} with only the given keys;
//     -u -1 sends "uses_allowed": null, -t -1 sends "expiry_time": null. Printed as is.
//   regtok delete TOKEN    DELETE /_synapse/admin/v1/registration_tokens/{token}; expects {}
//     ("successfully deleted"), else prints the response.
//
// Server notices:
//   notice send [-r] [-p N] TO PLAIN [FORMATTED]
//     POST /_synapse/admin/v1/send_server_notice
//       {"user_id": "@to:hs", "content": {"msgtype": "m.text", "body": PLAIN,
//        "format": "org.matrix.custom.html", "formatted_body": FORMATTED (PLAIN if omitted)}}
//     With --regex it pages GET /v2/users (guests=true, name="", user_id="") and matches
//     users[].name. Prints the list of responses (Synapse: {"event_id": ...}).
//
// History:
//   history purge ROOM_ID (-i EVENT_ID | -d DAYS | --before DATE | --before-ts MS) [--delete-local]
//     POST /_synapse/admin/v1/purge_history/{room_id}
//       {"purge_up_to_ts": ms} or {"purge_up_to_event_id": id}, plus
//       "delete_local_events": true with --delete-local (absent otherwise)
//     -> reads purge_id (Synapse: {"purge_id": "..."}).
//   history purge-status PURGE_ID
//     GET /_synapse/admin/v1/purge_history_status/{purge_id} -> reads status
//     ("active", "complete" or "failed").
//
// Other:
//   version   GET /_synapse/admin/v1/server_version -> printed as is ({"server_version": ...}).
//   matrix login USER -p PW   POST /_matrix/client/r0/login {"password", "type":
//     "m.login.password", "user": "@u:hs", "initial_device_display_name"} (the deprecated
//     top-level "user", not "identifier").

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// synadmCLI runs Debian's synadm against one server as one admin.
type synadmCLI struct {
	t      *testing.T
	config string // synadm's configuration file
	home   string // HOME of the process: synadm writes ~/.local/share/synadm/debug.log
}

// newSynadm writes a synadm configuration for admin on srv. It skips the test when synadm is
// not installed, unless CI is set: CI must run it (scripts/test.sh installs it).
func newSynadm(t *testing.T, srv *Server, admin *Client) *synadmCLI {
	t.Helper()
	if _, err := exec.LookPath("synadm"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("synadm is not installed: CI must run the synadm tests (scripts/test.sh installs Debian's synadm)")
		}
		t.Skip("synadm is not installed (apt-get install synadm); synadm tests skipped")
	}
	home := t.TempDir()
	cfg := map[string]any{
		"user":             admin.UserID,
		"token":            admin.Token,
		"base_url":         srv.URL,
		"admin_path":       "/_synapse/admin",
		"matrix_path":      "/_matrix",
		"format":           "json",
		"timeout":          30,
		"server_discovery": "well-known",
		"homeserver":       srv.Name,
	}
	// JSON is YAML: synadm reads the file with yaml.safe_load.
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(home, "synadm.yaml")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return &synadmCLI{t: t, config: path, home: home}
}

// run runs `synadm --batch --output json -c CONFIG args...` and returns every JSON value it
// printed, one per line, in order (commands such as `user deactivate` print the details
// they looked up first). It fails the test when synadm exits non-zero or prints nothing.
func (s *synadmCLI) run(args ...string) []any {
	s.t.Helper()
	cmd := exec.Command("synadm", append([]string{"--batch", "--output", "json", "-c", s.config}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+s.home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		s.t.Fatalf("synadm %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	var out []any
	for _, line := range strings.Split(stdout.String(), "\n") {
		var v any
		if json.Unmarshal([]byte(line), &v) == nil {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		s.t.Fatalf("synadm %s printed no JSON:\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), stdout.String(), stderr.String())
	}
	return out
}

// with returns the runner reporting to t (a subtest).
func (s *synadmCLI) with(t *testing.T) *synadmCLI {
	c := *s
	c.t = t
	return &c
}

// last runs synadm and returns the last JSON object it printed: the command's own response.
func (s *synadmCLI) last(args ...string) map[string]any {
	s.t.Helper()
	out := s.run(args...)
	m, ok := out[len(out)-1].(map[string]any)
	if !ok {
		s.t.Fatalf("synadm %s: last output %v is not an object", strings.Join(args, " "), out[len(out)-1])
	}
	if code, _ := m["errcode"].(string); code != "" {
		s.t.Fatalf("synadm %s: the server answered %v", strings.Join(args, " "), m)
	}
	return m
}

func anyList(v any) []any { l, _ := v.([]any); return l }

func TestSynadm(t *testing.T) {
	srv := StartServer(t)
	enableServerNotices(t, srv)
	admin := srv.RegisterAdmin(t, "root")
	cli := newSynadm(t, srv, admin)
	alice := srv.Register(t, "alice")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "synadm room"})
	alice.Send(roomID, "hello")

	t.Run("version", func(t *testing.T) {
		v := cli.with(t).last("version")
		if s, _ := v["server_version"].(string); s == "" {
			t.Errorf("synadm version printed %v, want server_version", v)
		}
	})

	t.Run("user list", func(t *testing.T) {
		r := cli.with(t).last("user", "list")
		if total, _ := r["total"].(float64); total < 2 {
			t.Errorf("total = %v, want at least 2", r["total"])
		}
		found := false
		for _, u := range anyList(r["users"]) {
			if m, _ := u.(map[string]any); m["name"] == alice.UserID {
				found = true
				if m["admin"] != false || m["deactivated"] != false {
					t.Errorf("alice in the list: %v", m)
				}
			}
		}
		if !found {
			t.Errorf("alice not in %v", r)
		}
		page := cli.with(t).last("user", "list", "-l", "1")
		if len(anyList(page["users"])) != 1 || page["next_token"] == nil {
			t.Errorf("a page of 1: %v, want one user and a next_token", page)
		}
		byName := cli.with(t).last("user", "list", "-n", "alic")
		if len(anyList(byName["users"])) != 1 {
			t.Errorf("search by name: %v", byName)
		}
	})

	t.Run("user details", func(t *testing.T) {
		r := cli.with(t).last("user", "details", "alice") // a localpart: synadm adds the server name
		if r["name"] != alice.UserID || r["admin"] != false || r["deactivated"] != false {
			t.Errorf("details: %v", r)
		}
		if _, ok := r["threepids"].([]any); !ok {
			t.Errorf("details without a threepids list: %v", r)
		}
	})

	t.Run("user modify", func(t *testing.T) {
		r := cli.with(t).last("user", "modify", "carol", "-P", "carol password 123", "-n", "Carol")
		if r["name"] != "@carol:"+srv.Name || r["displayname"] != "Carol" {
			t.Errorf("created user: %v", r)
		}
		login := srv.Do(t, "", "POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
			"identifier": map[string]any{"type": "m.id.user", "user": "carol"}, "password": "carol password 123"})
		if login.Status != 200 {
			t.Errorf("carol logging in with the password synadm set: %d %s", login.Status, login.Raw)
		}
		r = cli.with(t).last("user", "modify", "carol", "-n", "Carol C", "-a", "-t", "email", "Carol@Example.org")
		if r["displayname"] != "Carol C" || r["admin"] != true {
			t.Errorf("modified user: %v", r)
		}
		if tps := anyList(r["threepids"]); len(tps) != 1 || tps[0].(map[string]any)["address"] != "carol@example.org" {
			t.Errorf("threepids set by synadm: %v", r["threepids"])
		}
	})

	t.Run("user whois", func(t *testing.T) {
		r := cli.with(t).last("user", "whois", alice.UserID)
		if r["user_id"] != alice.UserID || r["devices"] == nil {
			t.Errorf("whois: %v", r)
		}
		// alice's requests so far recorded where and with which client she was last seen.
		conn := obj(r, "devices", alice.DeviceID)["sessions"].([]any)[0].(map[string]any)["connections"].([]any)[0].(map[string]any)
		if conn["ip"] != "127.0.0.1" || conn["user_agent"] == "" || conn["last_seen"] == float64(0) {
			t.Errorf("whois connection: %v", conn)
		}
	})

	t.Run("user login", func(t *testing.T) {
		r := cli.with(t).last("user", "login", alice.UserID, "--expire-never")
		tok, _ := r["access_token"].(string)
		who := srv.Do(t, tok, "GET", "/_matrix/client/v3/account/whoami", nil)
		if tok == "" || who.Status != 200 || str(who.Body, "user_id") != alice.UserID {
			t.Errorf("login as alice: %v; whoami %d %s", r, who.Status, who.Raw)
		}
	})

	t.Run("user membership", func(t *testing.T) {
		r := cli.with(t).last("user", "membership", alice.UserID, "--ids")
		if r["total"] != float64(1) || len(anyList(r["joined_rooms"])) != 1 || anyList(r["joined_rooms"])[0] != roomID {
			t.Errorf("membership: %v", r)
		}
	})

	t.Run("user password", func(t *testing.T) {
		bob := srv.Register(t, "bob")
		r := cli.with(t).last("user", "password", bob.UserID, "-p", "new bob password 1")
		if len(r) != 0 {
			t.Errorf("reset_password answered %v, want {}", r)
		}
		if who := bob.Do("GET", "/_matrix/client/v3/account/whoami", nil); who.Status != 401 {
			t.Errorf("bob's old token after the reset: %d, want 401 (logged out)", who.Status)
		}
	})

	t.Run("user deactivate", func(t *testing.T) {
		dave := srv.Register(t, "dave")
		join(dave, roomID)
		r := cli.with(t).last("user", "deactivate", dave.UserID)
		if r["id_server_unbind_result"] != "success" {
			t.Errorf("deactivate: %v", r)
		}
		if who := dave.Do("GET", "/_matrix/client/v3/account/whoami", nil); who.Status != 401 {
			t.Errorf("dave's token after deactivation: %d, want 401", who.Status)
		}
		d := cli.with(t).last("user", "details", dave.UserID)
		if d["deactivated"] != true {
			t.Errorf("details after deactivation: %v", d)
		}
	})

	t.Run("room list", func(t *testing.T) {
		r := cli.with(t).last("room", "list")
		if r["total_rooms"] != float64(1) {
			t.Errorf("total_rooms: %v", r)
		}
		rooms := anyList(r["rooms"])
		if len(rooms) != 1 {
			t.Fatalf("rooms: %v", r)
		}
		room, _ := rooms[0].(map[string]any)
		for _, k := range []string{"room_id", "name", "creator", "encryption", "federatable", "guest_access", "history_visibility",
			"join_rules", "joined_local_members", "joined_members", "public", "state_events", "version"} {
			if _, ok := room[k]; !ok {
				t.Errorf("room without %s: %v", k, room)
			}
		}
		if room["room_id"] != roomID || room["name"] != "synadm room" {
			t.Errorf("room: %v", room)
		}
		if s := cli.with(t).last("room", "search", "synadm"); len(anyList(s["rooms"])) != 1 {
			t.Errorf("room search: %v", s)
		}
	})

	t.Run("room details, members, state", func(t *testing.T) {
		d := cli.with(t).last("room", "details", roomID)
		if d["room_id"] != roomID || d["joined_members"] != float64(1) {
			t.Errorf("details: %v", d)
		}
		m := cli.with(t).last("room", "members", roomID)
		if m["total"] != float64(1) || len(anyList(m["members"])) != 1 || anyList(m["members"])[0] != alice.UserID {
			t.Errorf("members: %v", m)
		}
		s := cli.with(t).last("room", "state", roomID)
		types := map[string]bool{}
		for _, e := range anyList(s["state"]) {
			ev, _ := e.(map[string]any)
			types[str(ev, "type")] = true
		}
		if !types["m.room.create"] || !types["m.room.power_levels"] || !types["m.room.name"] {
			t.Errorf("state types: %v", types)
		}
	})

	t.Run("media list, quarantine, delete", func(t *testing.T) {
		mxc := upload(t, alice, []byte("synadm media"), "text/plain", "s.txt")
		mediaID := mxc[strings.LastIndex(mxc, "/")+1:]
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/send/m.room.message/media1",
			map[string]any{"msgtype": "m.file", "body": "s.txt", "url": mxc})
		rm := cli.with(t).last("media", "list", "-r", roomID)
		if fmt.Sprint(rm["local"]) != fmt.Sprint([]any{mxc}) {
			t.Errorf("room media: %v", rm)
		}
		um := cli.with(t).last("media", "list", "-u", alice.UserID)
		if um["total"] != float64(1) || len(anyList(um["media"])) != 1 {
			t.Errorf("user media: %v", um)
		}
		cli.with(t).last("media", "quarantine", "-i", mediaID)
		if r := srv.media(t, alice.Token, "GET", "/_matrix/client/v1/media/download/"+srv.Name+"/"+mediaID, nil, ""); r.Status != 404 {
			t.Errorf("download of quarantined media: %d, want 404", r.Status)
		}
		del := cli.with(t).last("media", "delete", "-i", mediaID)
		if del["total"] != float64(1) || fmt.Sprint(del["deleted_media"]) != fmt.Sprint([]any{mediaID}) {
			t.Errorf("media delete: %v", del)
		}
	})

	t.Run("regtok", func(t *testing.T) {
		n := cli.with(t).last("regtok", "new", "-n", "abcd", "-u", "3")
		if n["token"] != "abcd" || n["uses_allowed"] != float64(3) || n["pending"] != float64(0) || n["completed"] != float64(0) {
			t.Errorf("regtok new: %v", n)
		}
		gen := cli.with(t).last("regtok", "new", "-l", "8")
		if tok, _ := gen["token"].(string); len(tok) != 8 {
			t.Errorf("generated token: %v", gen)
		}
		u := cli.with(t).last("regtok", "update", "abcd", "-u", "-1", "-t", "4102444800000")
		if u["uses_allowed"] != nil || u["expiry_time"] != float64(4102444800000) {
			t.Errorf("regtok update: %v", u)
		}
		l := cli.with(t).last("regtok", "list", "--ts")
		if len(anyList(l["registration_tokens"])) != 2 {
			t.Errorf("regtok list: %v", l)
		}
		// delete prints nothing when the server answers {}.
		cmd := exec.Command("synadm", "--batch", "--output", "json", "-c", cli.config, "regtok", "delete", "abcd")
		cmd.Env = append(os.Environ(), "HOME="+cli.home)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "successfully deleted") {
			t.Errorf("regtok delete: %v %s", err, out)
		}
		if l := cli.with(t).last("regtok", "list"); len(anyList(l["registration_tokens"])) != 1 {
			t.Errorf("regtok list after delete: %v", l)
		}
	})

	t.Run("notice send", func(t *testing.T) {
		out := cli.with(t).run("notice", "send", alice.UserID, "maintenance at noon")
		resps := anyList(out[len(out)-1])
		if len(resps) != 1 {
			t.Fatalf("notice send printed %v", out)
		}
		r, _ := resps[0].(map[string]any)
		if s, _ := r["event_id"].(string); !strings.HasPrefix(s, "$") {
			t.Errorf("notice send: %v", r)
		}
	})

	t.Run("history purge", func(t *testing.T) {
		last := alice.Send(roomID, "the newest message")
		r := cli.with(t).last("history", "purge", roomID, "-i", last, "--delete-local")
		id, _ := r["purge_id"].(string)
		if id == "" {
			t.Fatalf("history purge: %v", r)
		}
		ok, state := poll(20*time.Second, 100*time.Millisecond, func() (bool, string) {
			s := cli.with(t).last("history", "purge-status", id)
			return s["status"] == "complete", fmt.Sprint(s)
		})
		if !ok {
			t.Errorf("purge status: %s", state)
		}
		page := getMessages(alice, roomID, "b", "", 50)
		for _, e := range page.chunk {
			if evBody(e) == "hello" {
				t.Errorf("the purged message is still in /messages: %v", e)
			}
		}
		if len(page.chunk) == 0 || evID(page.chunk[0]) != last {
			t.Errorf("/messages after the purge does not start with the newest message: %v", ids(page.chunk))
		}
	})

	t.Run("room delete", func(t *testing.T) {
		r := cli.with(t).last("room", "delete", roomID, "-b")
		if fmt.Sprint(r["kicked_users"]) == "[]" || r["failed_to_kick_users"] == nil || r["local_aliases"] == nil {
			t.Errorf("room delete: %v", r)
		}
		if j := alice.Do("POST", "/_matrix/client/v3/join/"+esc(roomID), map[string]any{}); j.Status != 403 {
			t.Errorf("joining a blocked room: %d, want 403", j.Status)
		}
	})
}
