package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const bridgeNamespaces = `  users:
    - exclusive: true
      regex: "@_bridge_.*"
  aliases:
    - exclusive: true
      regex: "#_bridge_.*"
  rooms: []`

// TestAppServiceClientAPI checks what a service and ordinary users see of the Client-Server
// API extensions: registration, identity assertion, exclusive namespaces, login, timestamp
// massaging, MSC4190 devices.
func TestAppServiceClientAPI(t *testing.T) {
	srv := StartServer(t)
	bridge := newFakeAS(t, "bridge")
	addAppServices(t, srv, bridge.registration(bridgeNamespaces, ""))
	alice := srv.Register(t, "alice")
	svc := bridge.asClient(t, srv)
	const reg = "/_matrix/client/v3/register"

	// Exclusive namespaces refuse ordinary registration.
	r := anon(t, srv, "POST", reg, map[string]any{"username": "_bridge_mallory", "password": "correct horse battery", "auth": map[string]any{"type": "m.login.dummy"}})
	expectErr(t, r, "ordinary registration in an exclusive namespace", 400, "M_EXCLUSIVE")
	r = anon(t, srv, "GET", "/_matrix/client/v3/register/available?username=_bridge_mallory", nil)
	expectErr(t, r, "availability in an exclusive namespace", 400, "M_EXCLUSIVE")

	// The service registers its users without password or UIA.
	r = call(svc, "POST", reg, map[string]any{"type": "m.login.application_service", "username": "_bridge_ghost", "inhibit_login": true})
	expectOK(t, r, "service registration")
	if r.Body["user_id"] != "@_bridge_ghost:"+srv.Name || r.Body["access_token"] != nil {
		t.Errorf("service registration with inhibit_login: %s", r.Raw)
	}
	r = call(svc, "POST", reg, map[string]any{"type": "m.login.application_service", "username": "_bridge_second"})
	expectOK(t, r, "service registration with login")
	if r.Body["access_token"] == nil || r.Body["device_id"] == nil {
		t.Errorf("service registration without inhibit_login: %s", r.Raw)
	}
	r = call(svc, "POST", reg, map[string]any{"type": "m.login.application_service", "username": "outsider"})
	expectErr(t, r, "service registration outside its namespace", 400, "M_EXCLUSIVE")
	r = anon(t, srv, "POST", reg, map[string]any{"type": "m.login.application_service", "username": "_bridge_x"})
	expectErr(t, r, "m.login.application_service without a token", 401, "M_MISSING_TOKEN")
	r = srv.Do(t, "not-a-token", "POST", reg, map[string]any{"type": "m.login.application_service", "username": "_bridge_x"})
	expectErr(t, r, "m.login.application_service with a wrong token", 401, "M_UNKNOWN_TOKEN")

	// Identity assertion: the sender by default, any registered user of the namespace with
	// user_id, nobody else.
	const whoami = "/_matrix/client/v3/account/whoami"
	if r = svc.MustDo("GET", whoami, nil); r.Body["user_id"] != "@_bridge_bot:"+srv.Name {
		t.Errorf("whoami as the service: %s", r.Raw)
	}
	if r = svc.MustDo("GET", as(whoami, "@_bridge_ghost:"+srv.Name), nil); r.Body["user_id"] != "@_bridge_ghost:"+srv.Name {
		t.Errorf("whoami masquerading: %s", r.Raw)
	}
	expectErr(t, call(svc, "GET", as(whoami, alice.UserID), nil), "masquerading outside the namespace", 403, "M_FORBIDDEN")
	expectErr(t, call(svc, "GET", as(whoami, "@_bridge_unregistered:"+srv.Name), nil), "masquerading as an unregistered user", 403, "M_FORBIDDEN")
	if r = alice.MustDo("GET", as(whoami, "@_bridge_ghost:"+srv.Name), nil); r.Body["user_id"] != alice.UserID {
		t.Errorf("an ordinary user's user_id parameter changed who they are: %s", r.Raw)
	}

	// Login as a user of the namespace.
	login := map[string]any{"type": "m.login.application_service", "identifier": map[string]any{"type": "m.id.user", "user": "_bridge_ghost"}}
	r = call(svc, "POST", "/_matrix/client/v3/login", login)
	expectOK(t, r, "service login")
	if r.Body["user_id"] != "@_bridge_ghost:"+srv.Name || r.Body["access_token"] == nil {
		t.Errorf("service login: %s", r.Raw)
	}
	login["identifier"] = map[string]any{"type": "m.id.user", "user": "alice"}
	expectErr(t, call(svc, "POST", "/_matrix/client/v3/login", login), "service login outside its namespace", 403, "M_EXCLUSIVE")
	expectErr(t, anon(t, srv, "POST", "/_matrix/client/v3/login", login), "service login without a token", 401, "M_MISSING_TOKEN")

	// Exclusive aliases.
	r = call(alice, "POST", "/_matrix/client/v3/createRoom", map[string]any{"room_alias_name": "_bridge_taken"})
	expectErr(t, r, "createRoom with an alias in an exclusive namespace", 400, "M_EXCLUSIVE")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	aliasPath := "/_matrix/client/v3/directory/room/" + esc("#_bridge_taken:"+srv.Name)
	expectErr(t, call(alice, "PUT", aliasPath, map[string]any{"room_id": room}), "alias in an exclusive namespace", 400, "M_EXCLUSIVE")
	expectOK(t, call(svc, "PUT", aliasPath, map[string]any{"room_id": room}), "the service's own alias")
	// A service, as itself or as one of its users, creates no alias outside its namespace.
	outside := "/_matrix/client/v3/directory/room/" + esc("#outside:"+srv.Name)
	expectErr(t, call(svc, "PUT", outside, map[string]any{"room_id": room}), "service alias outside its namespace", 400, "M_EXCLUSIVE")
	expectErr(t, call(svc, "PUT", as(outside, "@_bridge_ghost:"+srv.Name), map[string]any{"room_id": room}), "masqueraded alias outside the namespace", 400, "M_EXCLUSIVE")
	r = call(svc, "POST", "/_matrix/client/v3/createRoom", map[string]any{"room_alias_name": "outside"})
	expectErr(t, r, "service createRoom with an alias outside its namespace", 400, "M_EXCLUSIVE")
	expectOK(t, call(alice, "PUT", outside, map[string]any{"room_id": room}), "ordinary user's alias outside every namespace")

	// GET /login lists the application service login type.
	r = anon(t, srv, "GET", "/_matrix/client/v3/login", nil)
	if !strings.Contains(string(r.Raw), `"m.login.application_service"`) || !strings.Contains(string(r.Raw), `"m.login.password"`) {
		t.Errorf("GET /login with a registered service: %s", r.Raw)
	}

	// Timestamp massaging on send and state, for the service only.
	ghost := "@_bridge_ghost:" + srv.Name
	svc.MustDo("POST", as("/_matrix/client/v3/join/"+esc(room), ghost), map[string]any{})
	r = svc.MustDo("PUT", as(fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/ts1?ts=1500000000000", esc(room)), ghost), map[string]any{"msgtype": "m.text", "body": "old"})
	ev := alice.MustDo("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/event/%s", esc(room), esc(r.Body["event_id"].(string))), nil)
	if ev.Body["origin_server_ts"] != float64(1500000000000) || ev.Body["sender"] != ghost {
		t.Errorf("massaged event: %s", ev.Raw)
	}
	expectErr(t, call(svc, "PUT", as(fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/ts2?ts=soon", esc(room)), ghost), map[string]any{"body": "x"}), "bad ts", 400, "M_INVALID_PARAM")

	// MSC4190: devices created and deleted without UIA; device_id assertion.
	devPath := as("/_matrix/client/v3/devices/BRIDGEDEV", ghost)
	expectStatus(t, call(svc, "PUT", devPath, map[string]any{"display_name": "bridge device"}), "device creation", 201)
	if r = svc.MustDo("GET", as(whoami, ghost)+"&device_id=BRIDGEDEV", nil); r.Body["device_id"] != "BRIDGEDEV" {
		t.Errorf("whoami with device_id: %s", r.Raw)
	}
	expectErr(t, call(svc, "GET", as(whoami, ghost)+"&device_id=NOSUCH", nil), "unknown device_id", 400, "M_UNKNOWN_DEVICE")
	expectOK(t, call(svc, "PUT", devPath, map[string]any{"display_name": "renamed"}), "device rename")
	devs := svc.MustDo("GET", as("/_matrix/client/v3/devices", ghost), nil)
	if !strings.Contains(string(devs.Raw), `"renamed"`) {
		t.Errorf("devices after MSC4190 creation: %s", devs.Raw)
	}
	expectOK(t, call(svc, "DELETE", devPath, map[string]any{}), "device deletion without UIA")
	expectErr(t, call(svc, "GET", as(whoami, ghost)+"&device_id=BRIDGEDEV", nil), "deleted device", 400, "M_UNKNOWN_DEVICE")
	// An ordinary user still needs UIA.
	expectStatus(t, call(alice, "DELETE", "/_matrix/client/v3/devices/"+alice.DeviceID, map[string]any{}), "ordinary device deletion", 401)
}

// TestAppServiceExclusiveAcrossServices checks that a service whose namespace is wide
// (non-exclusive @.*) neither creates, logs in nor acts as the users another service holds
// exclusively, and that a service opted into MSC4190 gets no access tokens.
func TestAppServiceExclusiveAcrossServices(t *testing.T) {
	srv := StartServer(t)
	bridge := newFakeAS(t, "bridge")
	wide := newFakeAS(t, "wide")
	modern := newFakeAS(t, "modern")
	addAppServices(t, srv,
		bridge.registration(bridgeNamespaces, ""),
		wide.registration("  users:\n    - exclusive: false\n      regex: \"@.*\"", ""),
		modern.registration("  users:\n    - exclusive: true\n      regex: \"@_modern_.*\"", "io.element.msc4190: true"))
	svcA, svcB, svcC := bridge.asClient(t, srv), wide.asClient(t, srv), modern.asClient(t, srv)
	const reg = "/_matrix/client/v3/register"
	expectOK(t, call(svcA, "POST", reg, map[string]any{"type": "m.login.application_service", "username": "_bridge_ghost", "inhibit_login": true}), "bridge registers its user")

	r := call(svcB, "POST", reg, map[string]any{"type": "m.login.application_service", "username": "_bridge_stolen"})
	expectErr(t, r, "registration in another service's exclusive namespace", 400, "M_EXCLUSIVE")
	r = call(svcA, "GET", as("/_matrix/client/v3/profile/"+esc("@_bridge_stolen:"+srv.Name), "@_bridge_ghost:"+srv.Name), nil)
	expectErr(t, r, "the refused user", 404, "M_NOT_FOUND")
	expectOK(t, call(svcB, "POST", reg, map[string]any{"type": "m.login.application_service", "username": "somebody", "inhibit_login": true}), "registration in the wide namespace")

	ghost := "@_bridge_ghost:" + srv.Name
	expectErr(t, call(svcB, "GET", as("/_matrix/client/v3/account/whoami", ghost), nil), "masquerading as another service's exclusive user", 403, "M_FORBIDDEN")
	login := map[string]any{"type": "m.login.application_service", "identifier": map[string]any{"type": "m.id.user", "user": "_bridge_ghost"}}
	expectErr(t, call(svcB, "POST", "/_matrix/client/v3/login", login), "login as another service's exclusive user", 403, "M_EXCLUSIVE")
	expectOK(t, call(svcA, "POST", "/_matrix/client/v3/login", login), "login by the owning service")

	// MSC4190: no access tokens for the service's users, from /login or /register.
	r = call(svcC, "POST", reg, map[string]any{"type": "m.login.application_service", "username": "_modern_user"})
	expectErr(t, r, "MSC4190 registration without inhibit_login", 400, "M_APPSERVICE_LOGIN_UNSUPPORTED")
	expectOK(t, call(svcC, "POST", reg, map[string]any{"type": "m.login.application_service", "username": "_modern_user", "inhibit_login": true}), "MSC4190 registration with inhibit_login")
	login["identifier"] = map[string]any{"type": "m.id.user", "user": "_modern_user"}
	expectErr(t, call(svcC, "POST", "/_matrix/client/v3/login", login), "MSC4190 login", 400, "M_APPSERVICE_LOGIN_UNSUPPORTED")
	expectStatus(t, call(svcC, "PUT", as("/_matrix/client/v3/devices/MODERNDEV", "@_modern_user:"+srv.Name), map[string]any{}), "MSC4190 device creation", 201)
}

// withoutAge returns a transaction body with its events' unsigned.age removed.
func withoutAge(t *testing.T, body []byte) string {
	t.Helper()
	var b map[string]any
	if err := json.Unmarshal(body, &b); err != nil {
		t.Errorf("transaction body: %v", err) // not Fatal: the fake service's handler calls it
		return string(body)
	}
	evs, _ := b["events"].([]any)
	for _, e := range evs {
		if u, ok := e.(map[string]any)["unsigned"].(map[string]any); ok {
			delete(u, "age")
		}
	}
	out, _ := json.Marshal(b)
	return string(out)
}

// eventAge returns the unsigned.age of an event of a transaction body, or -1.
func eventAge(t *testing.T, body []byte, eventID string) int64 {
	t.Helper()
	var b struct {
		Events []struct {
			EventID  string `json:"event_id"`
			Unsigned struct {
				Age *int64 `json:"age"`
			} `json:"unsigned"`
		} `json:"events"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("transaction body: %v", err)
	}
	for _, e := range b.Events {
		if e.EventID == eventID && e.Unsigned.Age != nil {
			return *e.Unsigned.Age
		}
	}
	return -1
}

// TestAppServiceTransactions checks the pushed transactions' wire format, interest, and
// the retry of a failed transaction under the same ID.
func TestAppServiceTransactions(t *testing.T) {
	srv := StartServer(t)
	bridge := newFakeAS(t, "bridge")
	addAppServices(t, srv, bridge.registration(bridgeNamespaces, "receive_ephemeral: true"))
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	svc := bridge.asClient(t, srv)
	ghost := "@_bridge_ghost:" + srv.Name
	svc.MustDo("POST", "/_matrix/client/v3/register", map[string]any{"type": "m.login.application_service", "username": "_bridge_ghost", "inhibit_login": true})

	// A room without the service's users is of no interest.
	private := bob.CreateRoom(map[string]any{})
	secret := bob.Send(private, "not for the bridge")
	// Inviting a ghost is: the invite's state_key is in the namespace.
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	inv := alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]any{"user_id": ghost})
	_ = inv
	evs := bridge.waitEvents("invite", 10*time.Second, func(evs []map[string]any) bool {
		for _, e := range evs {
			if e["type"] == "m.room.member" && e["state_key"] == ghost {
				return true
			}
		}
		return false
	})
	if hasEvent(evs, secret) {
		t.Error("an event of a room without the service's users was pushed")
	}
	svc.MustDo("POST", as("/_matrix/client/v3/join/"+esc(room), ghost), map[string]any{})
	msg := alice.Send(room, "hello bridge")
	evs = bridge.waitEvents("message", 10*time.Second, func(evs []map[string]any) bool { return hasEvent(evs, msg) })
	for _, e := range evs {
		if e["event_id"] == msg {
			for _, k := range []string{"event_id", "room_id", "sender", "type", "content", "origin_server_ts"} {
				if e[k] == nil {
					t.Errorf("pushed event lacks %s: %v", k, e)
				}
			}
			if e["room_id"] != room || e["sender"] != alice.UserID {
				t.Errorf("pushed event: %v", e)
			}
		}
	}
	for _, a := range bridge.txnAttempts() {
		if a.Method != http.MethodPut || a.Auth != "Bearer "+bridge.HSToken {
			t.Errorf("transaction %s: method %s, Authorization %q", a.TxnID, a.Method, a.Auth)
		}
		var body map[string]json.RawMessage
		if err := json.Unmarshal(a.Body, &body); err != nil || body["events"] == nil {
			t.Errorf("transaction %s body: %s", a.TxnID, a.Body)
		}
	}

	// Ephemeral data of the rooms of the service's users, with room_id.
	alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/typing/"+esc(alice.UserID), map[string]any{"typing": true, "timeout": 30000})
	bridge.waitEphemeral("typing", func(e map[string]any) bool {
		users, _ := obj(e, "content")["user_ids"].([]any)
		return e["type"] == "m.typing" && e["room_id"] == room && len(users) == 1 && users[0] == alice.UserID
	})
	alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/receipt/m.read/"+esc(msg), map[string]any{})
	bridge.waitEphemeral("receipt", func(e map[string]any) bool {
		return e["type"] == "m.receipt" && e["room_id"] == room && obj(obj(obj(e, "content"), msg), "m.read")[alice.UserID] != nil
	})
	bob.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(private)+"/typing/"+esc(bob.UserID), map[string]any{"typing": true, "timeout": 30000})
	alice.MustDo("PUT", "/_matrix/client/v3/presence/"+esc(alice.UserID)+"/status", map[string]any{"presence": "online", "status_msg": "bridging"})
	bridge.waitEphemeral("presence", func(e map[string]any) bool {
		return e["type"] == "m.presence" && e["sender"] == alice.UserID && obj(e, "content")["status_msg"] == "bridging"
	})

	// A 500 is retried with the same transaction ID and body.
	before := len(bridge.txnAttempts())
	bridge.setFail(func(n int) int {
		if n == before+1 {
			return 500
		}
		return 0
	})
	retried := alice.Send(room, "after a failure")
	bridge.waitEvents("retried message", 10*time.Second, func(evs []map[string]any) bool { return hasEvent(evs, retried) })
	att := bridge.txnAttempts()[before:]
	// Only unsigned.age may differ: it is computed at each attempt.
	if len(att) < 2 || att[0].Status != 500 || att[1].TxnID != att[0].TxnID || withoutAge(t, att[1].Body) != withoutAge(t, att[0].Body) {
		t.Errorf("retry after a 500: attempts %+v", att)
	} else if a0, a1 := eventAge(t, att[0].Body, retried), eventAge(t, att[1].Body, retried); a0 < 0 || a1 < a0+200 {
		t.Errorf("unsigned.age not computed at send: first attempt %d ms, retry (after >= 250 ms) %d ms", a0, a1)
	}
	bridge.mu.Lock()
	for _, e := range bridge.eph {
		if e["room_id"] == private {
			t.Errorf("ephemeral data of a room without the service's users was pushed: %v", e)
		}
	}
	bridge.mu.Unlock()
}

// TestAppServicePingAndQueries checks ping both ways, the user and alias queries, and the
// third-party lookups forwarded to the service.
func TestAppServicePingAndQueries(t *testing.T) {
	srv := StartServer(t)
	bridge := newFakeAS(t, "bridge")
	addAppServices(t, srv, bridge.registration(bridgeNamespaces, "protocols: [\"fakenet\"]"))
	alice := srv.Register(t, "alice")
	svc := bridge.asClient(t, srv)
	pingPath := "/_matrix/client/v1/appservice/bridge/ping"

	var pinged string
	bridge.handle("/_matrix/app/v1/ping", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]string
		_ = json.NewDecoder(r.Body).Decode(&body)
		pinged = body["transaction_id"]
		_, _ = w.Write([]byte("{}"))
	})
	r := call(svc, "POST", pingPath, map[string]any{"transaction_id": "meow"})
	expectOK(t, r, "ping")
	if _, ok := r.Body["duration_ms"].(float64); !ok || pinged != "meow" {
		t.Errorf("ping: %s, service saw %q", r.Raw, pinged)
	}
	pinged = "unchanged"
	r = call(svc, "POST", pingPath, nil)
	expectOK(t, r, "ping without a body")
	if pinged != "" {
		t.Errorf("ping without a body: service saw transaction_id %q", pinged)
	}
	expectErr(t, call(svc, "POST", "/_matrix/client/v1/appservice/other/ping", map[string]any{}), "ping of another service", 403, "M_FORBIDDEN")
	expectErr(t, call(alice, "POST", pingPath, map[string]any{}), "ping by a user", 403, "M_FORBIDDEN")
	bridge.handle("/_matrix/app/v1/ping", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(403)
		_, _ = w.Write([]byte(`{"errcode":"M_FORBIDDEN"}`))
	})
	r = svc.Do("POST", pingPath, map[string]any{})
	if r.Status != 502 || r.ErrCode() != "M_BAD_STATUS" || r.Body["status"] != float64(403) || r.Body["body"] != `{"errcode":"M_FORBIDDEN"}` {
		t.Errorf("ping of a failing service: %d %s", r.Status, r.Raw)
	}

	// Alias query: the service creates the portal room when asked.
	portal := "#_bridge_portal:" + srv.Name
	bridge.handle("/_matrix/app/v1/rooms/"+portal, func(w http.ResponseWriter, r *http.Request) {
		resp := svc.Do("POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat", "room_alias_name": "_bridge_portal"})
		if resp.Status != 200 {
			t.Errorf("service createRoom: %s", resp.Raw)
		}
		_, _ = w.Write([]byte("{}"))
	})
	r = call(alice, "GET", "/_matrix/client/v3/directory/room/"+esc(portal), nil)
	expectOK(t, r, "alias created by the service's query")
	joined := alice.MustDo("POST", "/_matrix/client/v3/join/"+esc(portal), map[string]any{})
	if joined.Body["room_id"] != r.Body["room_id"] {
		t.Errorf("join by alias: %s, alias resolved to %s", joined.Raw, r.Raw)
	}
	expectErr(t, call(alice, "GET", "/_matrix/client/v3/directory/room/"+esc("#_bridge_nothing:"+srv.Name), nil), "alias the service does not know", 404, "M_NOT_FOUND")

	// User query: the service registers the ghost when asked.
	ghost := "@_bridge_queried:" + srv.Name
	bridge.handle("/_matrix/app/v1/users/"+ghost, func(w http.ResponseWriter, r *http.Request) {
		svc.MustDo("POST", "/_matrix/client/v3/register", map[string]any{"type": "m.login.application_service", "username": "_bridge_queried", "inhibit_login": true})
		_, _ = w.Write([]byte("{}"))
	})
	expectOK(t, call(alice, "GET", "/_matrix/client/v3/profile/"+esc(ghost), nil), "profile of a user created by the query")
	expectErr(t, call(alice, "GET", "/_matrix/client/v3/profile/"+esc("@_bridge_nobody:"+srv.Name), nil), "unknown ghost", 404, "M_NOT_FOUND")

	// Third-party protocols and lookups.
	bridge.handle("/_matrix/app/v1/thirdparty/protocol/fakenet", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"user_fields":["nick"],"location_fields":["channel"],"icon":"mxc://x/y","field_types":{},"instances":[{"desc":"Fake","network_id":"fake1","fields":{}}]}`))
	})
	bridge.handle("/_matrix/app/v1/thirdparty/location/fakenet", func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, `[{"alias":"#_bridge_portal:%s","protocol":"fakenet","fields":{"channel":%q}}]`, srv.Name, r.URL.Query().Get("channel"))
	})
	bridge.handle("/_matrix/app/v1/thirdparty/user", func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, `[{"userid":%q,"protocol":"fakenet","fields":{"nick":"q"}}]`, r.URL.Query().Get("userid"))
	})
	r = alice.MustDo("GET", "/_matrix/client/v3/thirdparty/protocols", nil)
	inst, _ := obj(r.Body, "fakenet")["instances"].([]any)
	if len(inst) != 1 || inst[0].(map[string]any)["instance_id"] == nil || inst[0].(map[string]any)["network_id"] != "fake1" {
		t.Errorf("protocols: %s", r.Raw)
	}
	expectOK(t, call(alice, "GET", "/_matrix/client/v3/thirdparty/protocol/fakenet", nil), "one protocol")
	expectErr(t, call(alice, "GET", "/_matrix/client/v3/thirdparty/protocol/nonet", nil), "unknown protocol", 404, "M_NOT_FOUND")
	// The network's room directory.
	portalID := joined.Body["room_id"].(string)
	netPath := "/_matrix/client/v3/directory/list/appservice/fake1/" + esc(portalID)
	expectOK(t, call(svc, "PUT", netPath, map[string]any{"visibility": "public"}), "publishing in the network's directory")
	expectErr(t, call(alice, "PUT", netPath, map[string]any{"visibility": "public"}), "network directory by a user", 403, "M_FORBIDDEN")
	instanceID, _ := inst[0].(map[string]any)["instance_id"].(string)
	for _, c := range []struct {
		body map[string]any
		want bool
	}{
		{map[string]any{}, false},
		{map[string]any{"third_party_instance_id": instanceID}, true},
		{map[string]any{"third_party_instance_id": "bridge|other"}, false},
		{map[string]any{"include_all_networks": true}, true},
	} {
		pr := alice.MustDo("POST", "/_matrix/client/v3/publicRooms", c.body)
		if got := strings.Contains(string(pr.Raw), portalID); got != c.want {
			t.Errorf("publicRooms %v lists the portal: %v, want %v (%s)", c.body, got, c.want, pr.Raw)
		}
	}
	r = alice.MustDo("GET", "/_matrix/client/v3/thirdparty/location/fakenet?channel=%23chan", nil)
	if !strings.Contains(string(r.Raw), `"channel":"#chan"`) {
		t.Errorf("location lookup: %s", r.Raw)
	}
	r = alice.MustDo("GET", "/_matrix/client/v3/thirdparty/user?userid="+esc(ghost), nil)
	if !strings.Contains(string(r.Raw), ghost) {
		t.Errorf("reverse user lookup: %s", r.Raw)
	}
}

// TestAppServiceOrderAndRestart sends 1,000 events in 10 rooms while the service fails
// every third request, then kills Lattice with transactions queued: every event arrives
// once, in order, and a transaction retried after the restart keeps its ID and body.
func TestAppServiceOrderAndRestart(t *testing.T) {
	srv := StartServer(t)
	bridge := newFakeAS(t, "all")
	addAppServices(t, srv, bridge.registration(`  users: []
  aliases: []
  rooms:
    - exclusive: false
      regex: "!.*"`, ""))
	alice := srv.Register(t, "alice")
	var rooms []string
	for i := 0; i < 10; i++ {
		rooms = append(rooms, alice.CreateRoom(map[string]any{}))
	}
	bridge.waitEvents("room creation", 20*time.Second, func(evs []map[string]any) bool { return countType(evs, "m.room.create") == 10 })
	bridge.setFail(func(n int) int {
		if n%3 == 0 {
			return 503
		}
		return 0
	})
	var sent []string
	for i := 0; i < 1000; i++ {
		sent = append(sent, alice.Send(rooms[i%10], fmt.Sprintf("m%d", i)))
	}
	checkOrder := func(what string) {
		evs := bridge.waitEvents(what, 120*time.Second, func(evs []map[string]any) bool { return countType(evs, "m.room.message") >= len(sent) })
		var got []string
		for _, e := range evs {
			if e["type"] == "m.room.message" {
				got = append(got, e["event_id"].(string))
			}
		}
		if len(got) != len(sent) {
			t.Fatalf("%s: %d messages delivered, want %d", what, len(got), len(sent))
		}
		for i := range sent {
			if got[i] != sent[i] {
				t.Fatalf("%s: message %d is %s, want %s", what, i, got[i], sent[i])
			}
		}
	}
	checkOrder("1,000 messages while the service flaps")

	// The service goes down; events queue; Lattice is killed and restarted.
	bridge.setFail(func(int) int { return 503 })
	for i := 0; i < 50; i++ {
		sent = append(sent, alice.Send(rooms[i%10], fmt.Sprintf("queued %d", i)))
	}
	deadline := time.Now().Add(10 * time.Second)
	for failedTxn(bridge.txnAttempts()) == "" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	pending := failedTxn(bridge.txnAttempts())
	if pending == "" {
		t.Fatal("no transaction attempted while the service was down")
	}
	// The admin API shows the queue and the error.
	admin := srv.RegisterAdmin(t, "root")
	var list Resp
	var st map[string]any
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		list = admin.MustDo("GET", "/_synapse/admin/v1/appservices", nil)
		svcs, _ := list.Body["appservices"].([]any)
		if len(svcs) != 1 || list.Body["total"] != float64(1) {
			t.Fatalf("admin appservices: %s", list.Raw)
		}
		st = svcs[0].(map[string]any)
		if st["last_error"] != "" || time.Now().After(deadline) {
			break
		}
	}
	if st["id"] != "all" || st["pending_txns"].(float64) < 1 || st["pending_events"].(float64) < 1 || !strings.Contains(st["last_error"].(string), "503") || st["sender"] != "@_all_bot:"+srv.Name {
		t.Errorf("admin appservices while the service is down: %s", list.Raw)
	}
	expectErr(t, call(alice, "GET", "/_synapse/admin/v1/appservices", nil), "appservices by a non-admin", 403, "M_FORBIDDEN")
	if out, err := exec.Command(binary, "appservices", "--config", srv.ConfigPath).CombinedOutput(); err != nil || !strings.Contains(string(out), "status 503") || !strings.Contains(string(out), "all ") {
		t.Errorf("lattice appservices: %v\n%s", err, out)
	}

	srv.Kill()
	srv.Start()
	before := len(bridge.txnAttempts())
	bridge.setFail(nil)
	checkOrder("queued messages after a SIGKILL restart")
	after := bridge.txnAttempts()[before:]
	if len(after) == 0 || after[0].TxnID != pending {
		t.Errorf("first transaction after the restart is %+v, want the pending %s again", after, pending)
	}
}

// failedTxn returns the ID of the last transaction that failed, if the last attempt failed.
func failedTxn(att []txnAttempt) string {
	if len(att) == 0 || att[len(att)-1].Status == 200 {
		return ""
	}
	return att[len(att)-1].TxnID
}

func countType(evs []map[string]any, typ string) int {
	n := 0
	for _, e := range evs {
		if e["type"] == typ {
			n++
		}
	}
	return n
}

func expectStatus(t *testing.T, r Resp, what string, status int) {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: status %d, want %d; body %s", what, r.Status, status, r.Raw)
	}
}
