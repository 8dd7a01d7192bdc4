package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// event is a client event as decoded from JSON.
type event = map[string]any

// obj walks nested JSON objects by key and returns the object at the end, or nil.
func obj(m map[string]any, keys ...string) map[string]any {
	cur := m
	for _, k := range keys {
		if cur == nil {
			return nil
		}
		next, _ := cur[k].(map[string]any)
		cur = next
	}
	return cur
}

// list returns m[key] as a list of objects (non-objects are skipped).
func list(m map[string]any, key string) []event {
	if m == nil {
		return nil
	}
	raw, _ := m[key].([]any)
	out := make([]event, 0, len(raw))
	for _, v := range raw {
		if e, ok := v.(map[string]any); ok {
			out = append(out, e)
		}
	}
	return out
}

// str returns m[key] as a string ("" when absent or not a string).
func str(m map[string]any, key string) string {
	if m == nil {
		return ""
	}
	s, _ := m[key].(string)
	return s
}

func evType(e event) string { return str(e, "type") }
func evID(e event) string   { return str(e, "event_id") }
func evBody(e event) string { return str(obj(e, "content"), "body") }

// onlyType keeps the events of type typ, in order.
func onlyType(evs []event, typ string) []event {
	var out []event
	for _, e := range evs {
		if evType(e) == typ {
			out = append(out, e)
		}
	}
	return out
}

// ids maps events to their event IDs.
func ids(evs []event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = evID(e)
	}
	return out
}

// reversed returns a reversed copy.
func reversed[T any](in []T) []T {
	out := make([]T, len(in))
	for i, v := range in {
		out[len(in)-1-i] = v
	}
	return out
}

// call is Client.Do plus the suite-wide rule that no response may be a 5xx.
func call(c *Client, method, path string, body any) Resp {
	c.t.Helper()
	r := c.Do(method, path, body)
	if r.Status >= 500 {
		c.t.Errorf("%s %s: server error %d %s", method, path, r.Status, r.Raw)
	}
	return r
}

// anon is an unauthenticated request, also checked for 5xx.
func anon(t *testing.T, s *Server, method, path string, body any) Resp {
	t.Helper()
	r := s.Do(t, "", method, path, body)
	if r.Status >= 500 {
		t.Errorf("%s %s: server error %d %s", method, path, r.Status, r.Raw)
	}
	return r
}

// expectErr checks a Matrix error response's HTTP status and errcode. Any of codes is accepted.
func expectErr(t *testing.T, r Resp, what string, status int, codes ...string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: status %d, want %d (%v); body %s", what, r.Status, status, codes, r.Raw)
		return
	}
	for _, c := range codes {
		if r.ErrCode() == c {
			return
		}
	}
	t.Errorf("%s: errcode %q, want one of %v; body %s", what, r.ErrCode(), codes, r.Raw)
}

// expectOK checks a 200 response.
func expectOK(t *testing.T, r Resp, what string) {
	t.Helper()
	if r.Status != 200 {
		t.Errorf("%s: status %d, want 200; body %s", what, r.Status, r.Raw)
	}
}

// rawDo sends body as is and returns the transport error instead of failing the test.
func rawDo(s *Server, token, method, path string, body []byte) (Resp, error) {
	req, err := http.NewRequest(method, s.URL+path, bytes.NewReader(body))
	if err != nil {
		return Resp{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Resp{}, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := Resp{Status: resp.StatusCode, Raw: raw}
	_ = json.Unmarshal(raw, &r.Body)
	return r, nil
}

// sendTxn sends an event with an explicit transaction ID.
func sendTxn(c *Client, roomID, evType, txnID string, content any) Resp {
	c.t.Helper()
	return call(c, "PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/%s/%s", esc(roomID), esc(evType), esc(txnID)), content)
}

// join joins a room by ID and fails the test unless it succeeds.
func join(c *Client, roomID string) {
	c.t.Helper()
	r := call(c, "POST", "/_matrix/client/v3/join/"+esc(roomID), map[string]any{})
	if r.Status != 200 {
		c.t.Fatalf("%s join %s: %d %s", c.UserID, roomID, r.Status, r.Raw)
	}
	if got := str(r.Body, "room_id"); got != roomID {
		c.t.Errorf("%s join: room_id %q, want %q", c.UserID, got, roomID)
	}
}

// statePath is the state endpoint; for an empty state key it uses the form without the
// trailing slash (room_state.yaml: "When an empty string, the trailing slash on this endpoint
// is optional"). The trailing-slash form is checked explicitly in the tests.
func statePath(roomID, evType, stateKey string) string {
	p := fmt.Sprintf("/_matrix/client/v3/rooms/%s/state/%s", esc(roomID), esc(evType))
	if stateKey != "" {
		p += "/" + esc(stateKey)
	}
	return p
}

// stateEvent fetches the content of a state event; the Resp is returned for status checks.
func stateEvent(c *Client, roomID, evType, stateKey string) Resp {
	c.t.Helper()
	return call(c, "GET", statePath(roomID, evType, stateKey), nil)
}

// putState sends a state event.
func putState(c *Client, roomID, evType, stateKey string, content any) Resp {
	c.t.Helper()
	return call(c, "PUT", statePath(roomID, evType, stateKey), content)
}

// membership returns the membership of userID in roomID as seen by c ("" if unknown).
func membership(c *Client, roomID, userID string) string {
	c.t.Helper()
	r := stateEvent(c, roomID, "m.room.member", userID)
	if r.Status != 200 {
		c.t.Errorf("GET member %s: %d %s", userID, r.Status, r.Raw)
		return ""
	}
	return str(r.Body, "membership")
}

// syncer is a client's /sync loop: it keeps next_batch and records every timeline event.
type syncer struct {
	c      *Client
	filter string
	since  string
	seen   map[string]bool    // event IDs seen in any timeline
	tl     map[string][]event // room ID -> joined-room timeline events in arrival order
	last   Resp
}

func newSyncer(c *Client, filter string) *syncer {
	return &syncer{c: c, filter: filter, seen: map[string]bool{}, tl: map[string][]event{}}
}

// once does one /sync, records timeline events of joined rooms and fails on a duplicate.
func (s *syncer) once(timeoutMS int) Resp {
	s.c.t.Helper()
	r := s.c.Sync(s.since, s.filter, timeoutMS)
	s.record(r)
	return r
}

// record takes in a /sync response obtained with s.since.
func (s *syncer) record(r Resp) {
	s.c.t.Helper()
	nb := str(r.Body, "next_batch")
	if nb == "" {
		s.c.t.Fatalf("sync: no next_batch: %s", r.Raw)
	}
	for roomID, v := range obj(r.Body, "rooms", "join") {
		room, _ := v.(map[string]any)
		for _, e := range list(obj(room, "timeline"), "events") {
			id := evID(e)
			if s.seen[id] {
				s.c.t.Errorf("%s: sync since=%q returned event %s (%s) again", s.c.UserID, s.since, id, evType(e))
				continue
			}
			s.seen[id] = true
			s.tl[roomID] = append(s.tl[roomID], e)
		}
	}
	s.since = nb
	s.last = r
}

// until syncs until cond is true for some response, for at most 20 s.
func (s *syncer) until(what string, cond func(Resp) bool) Resp {
	s.c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	timeout := 0
	for {
		r := s.once(timeout)
		if cond(r) {
			return r
		}
		if time.Now().After(deadline) {
			s.c.t.Fatalf("%s: timed out waiting for %s; last sync: %.2000s", s.c.UserID, what, r.Raw)
		}
		timeout = 1000
	}
}

// waitEvent syncs until eventID has appeared in roomID's timeline.
func (s *syncer) waitEvent(roomID, eventID string) {
	s.c.t.Helper()
	if s.seen[eventID] {
		return
	}
	s.until("event "+eventID, func(Resp) bool { return s.seen[eventID] })
}

// messagesPage is one /messages response.
type messagesPage struct {
	chunk      []event
	start, end string
}

func getMessages(c *Client, roomID, dir, from string, limit int) messagesPage {
	c.t.Helper()
	q := url.Values{}
	q.Set("dir", dir)
	if from != "" {
		q.Set("from", from)
	}
	q.Set("limit", fmt.Sprint(limit))
	r := call(c, "GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/messages?%s", esc(roomID), q.Encode()), nil)
	if r.Status != 200 {
		c.t.Fatalf("/messages dir=%s from=%q: %d %s", dir, from, r.Status, r.Raw)
	}
	p := messagesPage{chunk: list(r.Body, "chunk"), start: str(r.Body, "start"), end: str(r.Body, "end")}
	// message_pagination.yaml: start "will be the same as the value given in from".
	if from != "" && p.start != from {
		c.t.Errorf("/messages from=%q returned start=%q", from, p.start)
	}
	if p.start == "" {
		c.t.Errorf("/messages dir=%s from=%q: start missing (required): %.300s", dir, from, r.Raw)
	}
	return p
}

// paginateBack pages /messages?dir=b from `from` until stop returns true for an event (that
// event and everything after it in the page is discarded), `end` is absent, or the server keeps
// returning empty chunks. It returns the events in reverse-chronological order.
func paginateBack(c *Client, roomID, from string, limit int, stop func(event) bool) []event {
	c.t.Helper()
	var out []event
	empties := 0
	for page := 0; page < 1000; page++ {
		p := getMessages(c, roomID, "b", from, limit)
		for _, e := range p.chunk {
			if stop != nil && stop(e) {
				return out
			}
			out = append(out, e)
		}
		if p.end == "" {
			return out
		}
		if len(p.chunk) == 0 {
			empties++
			if empties >= 3 || p.end == from {
				return out
			}
		} else {
			empties = 0
		}
		if len(p.chunk) > limit {
			c.t.Errorf("/messages limit=%d returned %d events", limit, len(p.chunk))
		}
		from = p.end
	}
	c.t.Fatalf("/messages pagination did not terminate")
	return nil
}

// checkSameIDs compares two event ID sequences and reports the first difference.
func checkSameIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d events, want %d", what, len(got), len(want))
	}
	n := min(len(got), len(want))
	for i := 0; i < n; i++ {
		if got[i] != want[i] {
			t.Errorf("%s: first difference at index %d: got %s, want %s", what, i, got[i], want[i])
			return
		}
	}
}

// checkNoDuplicates fails if an event ID appears twice.
func checkNoDuplicates(t *testing.T, what string, evs []event) {
	t.Helper()
	seen := map[string]bool{}
	for _, e := range evs {
		if seen[evID(e)] {
			t.Errorf("%s: event %s (%s) appears twice", what, evID(e), evType(e))
		}
		seen[evID(e)] = true
	}
}

const testPassword = "correct horse battery"

// loginPassword attempts a password login and returns the raw response.
func loginPassword(t *testing.T, s *Server, localpart, password string) Resp {
	t.Helper()
	return anon(t, s, "POST", "/_matrix/client/v3/login", map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": localpart},
		"password":   password,
	})
}

// passwordAuth is the auth dict of the m.login.password UIA stage.
func passwordAuth(userID, password, session string) map[string]any {
	a := map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": userID},
		"password":   password,
	}
	if session != "" {
		a["session"] = session
	}
	return a
}

// uiaChallenge sends body without auth and checks the 401 UIA response offers a flow with the
// m.login.password stage; it returns the session ("" when the server gives none).
func uiaChallenge(c *Client, method, path string, body map[string]any) string {
	c.t.Helper()
	r := call(c, method, path, body)
	if r.Status != 401 {
		c.t.Fatalf("%s %s without auth: status %d, want 401 with UIA flows; body %s", method, path, r.Status, r.Raw)
	}
	found := false
	for _, f := range list(r.Body, "flows") {
		stages, _ := f["stages"].([]any)
		if len(stages) == 1 && stages[0] == "m.login.password" {
			found = true
		}
	}
	if !found {
		c.t.Errorf("%s %s: UIA flows lack a [m.login.password] flow: %s", method, path, r.Raw)
	}
	if _, ok := r.Body["session"]; !ok {
		c.t.Errorf("%s %s: UIA response has no session: %s", method, path, r.Raw)
	}
	return str(r.Body, "session")
}

// withAuth copies body and adds auth.
func withAuth(body map[string]any, auth map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range body {
		out[k] = v
	}
	out["auth"] = auth
	return out
}

// uiaPassword runs a request through user-interactive auth with the m.login.password stage.
func uiaPassword(c *Client, method, path string, body map[string]any, password string) Resp {
	c.t.Helper()
	if body == nil {
		body = map[string]any{}
	}
	session := uiaChallenge(c, method, path, body)
	return call(c, method, path, withAuth(body, passwordAuth(c.UserID, password, session)))
}

// whoami returns the whoami response with c's token.
func whoami(c *Client) Resp {
	c.t.Helper()
	return call(c, "GET", "/_matrix/client/v3/account/whoami", nil)
}

// jsonString marshals v.
func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// bigBody returns a JSON object with one string field of n bytes.
func bigBody(n int) []byte {
	return []byte(`{"name":"` + strings.Repeat("a", n) + `"}`)
}
