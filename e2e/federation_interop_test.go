package e2e

// Interoperability of Lattice's federation with a homeserver that is not Lattice: the fake
// server of fedharness_test.go, played with gomatrixserverlib, hosts rooms of its own (room
// versions 10 and 12) and answers the federation API as a resident server does. The tests
// cover what the three-Lattice test cannot: gaps in the DAG filled with get_missing_events
// or with /state_ids and /event, Lattice joining, writing to and leaving a room hosted by
// another implementation, invites from it, and backfill from it.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/roomserver/ownedstate"
)

// senderUserID is gomatrixserverlib's spec.UserIDForSender for room versions without
// pseudo IDs: the sender is the user ID.
func senderUserID(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) { return s.ToUserID(), nil }

// keyVerifier is a gomatrixserverlib.JSONVerifier that knows the signing keys the servers
// published (no fetching while verifying: the fake must never call Lattice from a handler).
type keyVerifier struct {
	keys map[spec.ServerName]map[gomatrixserverlib.KeyID]ed25519.PublicKey
}

// VerifyJSONs implements gomatrixserverlib.JSONVerifier: a message is valid for a server
// when one of its signatures by that server verifies with a known key.
func (v *keyVerifier) VerifyJSONs(_ context.Context, reqs []gomatrixserverlib.VerifyJSONRequest) ([]gomatrixserverlib.VerifyJSONResult, error) {
	out := make([]gomatrixserverlib.VerifyJSONResult, len(reqs))
	for i, r := range reqs {
		keys := v.keys[r.ServerName]
		ids, err := gomatrixserverlib.ListKeyIDs(string(r.ServerName), r.Message)
		if err != nil {
			out[i].Error = err
			continue
		}
		ok := false
		for _, id := range ids {
			if k := keys[id]; k != nil && gomatrixserverlib.VerifyJSON(string(r.ServerName), id, k, r.Message) == nil {
				ok = true
			}
		}
		if !ok {
			out[i].Error = fmt.Errorf("no valid signature of %s (signed with key IDs %v, known keys %d)", r.ServerName, ids, len(keys))
		}
	}
	return out, nil
}

// publishedKeys fetches GET /_matrix/key/v2/server of server with f's client and returns its
// verify keys, after checking the answer is for that server and self-signed.
func publishedKeys(t *testing.T, f *fakeHomeserver, server spec.ServerName) map[gomatrixserverlib.KeyID]ed25519.PublicKey {
	t.Helper()
	resp, err := f.client.Get("https://" + string(server) + "/_matrix/key/v2/server")
	if err != nil {
		t.Fatalf("GET the signing keys of %s: %v", server, err)
	}
	defer resp.Body.Close()
	var keys gomatrixserverlib.ServerKeys
	if err := json.NewDecoder(resp.Body).Decode(&keys); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET the signing keys of %s: %d, %v", server, resp.StatusCode, err)
	}
	if keys.ServerName != server {
		t.Fatalf("the signing keys of %s name server %q", server, keys.ServerName)
	}
	out := map[gomatrixserverlib.KeyID]ed25519.PublicKey{}
	for id, k := range keys.VerifyKeys {
		out[id] = ed25519.PublicKey(k.Key)
	}
	v := &keyVerifier{keys: map[spec.ServerName]map[gomatrixserverlib.KeyID]ed25519.PublicKey{server: out}}
	res, _ := v.VerifyJSONs(context.Background(), []gomatrixserverlib.VerifyJSONRequest{{ServerName: server, Message: keys.Raw}})
	if res[0].Error != nil {
		t.Fatalf("the key answer of %s is not self-signed: %v: %s", server, res[0].Error, keys.Raw)
	}
	return out
}

// hostedRoom is the fake server's copy of a room's DAG: every event it knows, the state
// before each event it accepted into the DAG, the current state and the forward extremities.
// Guarded by the interopHost's mu.
type hostedRoom struct {
	id     string
	ver    gomatrixserverlib.IRoomVersion
	events map[string]gomatrixserverlib.PDU
	order  []string                                    // DAG events in the order the fake accepted them
	before map[string]map[string]gomatrixserverlib.PDU // event ID -> state before it ("type|state_key")
	state  map[string]gomatrixserverlib.PDU
	extrem []string
	depth  int64
}

func newHostedRoom(id string, ver gomatrixserverlib.IRoomVersion) *hostedRoom {
	return &hostedRoom{id: id, ver: ver, events: map[string]gomatrixserverlib.PDU{},
		before: map[string]map[string]gomatrixserverlib.PDU{}, state: map[string]gomatrixserverlib.PDU{}}
}

func copyPDUState(in map[string]gomatrixserverlib.PDU) map[string]gomatrixserverlib.PDU {
	out := make(map[string]gomatrixserverlib.PDU, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

// add accepts p into the DAG after the current state: the history the tests build is linear.
func (h *hostedRoom) add(p gomatrixserverlib.PDU) {
	if _, ok := h.before[p.EventID()]; ok {
		return
	}
	h.events[p.EventID()] = p
	h.order = append(h.order, p.EventID())
	h.before[p.EventID()] = copyPDUState(h.state)
	if sk := p.StateKey(); sk != nil {
		h.state[p.Type()+"|"+*sk] = p
	}
	prev := map[string]bool{}
	for _, id := range p.PrevEventIDs() {
		prev[id] = true
	}
	exts := []string{p.EventID()}
	for _, e := range h.extrem {
		if !prev[e] {
			exts = append(exts, e)
		}
	}
	h.extrem = exts
	h.depth = max(h.depth, p.Depth())
}

// authProvider returns the current state as auth events.
func (h *hostedRoom) authProvider() (*gomatrixserverlib.AuthEvents, error) {
	evs := make([]gomatrixserverlib.PDU, 0, len(h.state))
	for _, ev := range h.state {
		evs = append(evs, ev)
	}
	return gomatrixserverlib.NewAuthEvents(evs)
}

// proto returns an event of the room after its forward extremities, with its auth events
// chosen from the current state, not yet signed.
func (h *hostedRoom) proto(sender, evType string, stateKey *string, content any) (*gomatrixserverlib.EventBuilder, error) {
	js, err := json.Marshal(content)
	if err != nil {
		return nil, err
	}
	b := h.ver.NewEventBuilderFromProtoEvent(&gomatrixserverlib.ProtoEvent{
		SenderID: sender, RoomID: h.id, Type: evType, StateKey: stateKey,
		PrevEvents: append([]string{}, h.extrem...), Depth: h.depth + 1, Content: js,
	})
	provider, err := h.authProvider()
	if err != nil {
		return nil, err
	}
	if err := b.AddAuthEvents(provider); err != nil {
		return nil, err
	}
	return b, nil
}

// stateList returns a state map's events sorted by depth.
func stateList(state map[string]gomatrixserverlib.PDU) []gomatrixserverlib.PDU {
	out := make([]gomatrixserverlib.PDU, 0, len(state))
	for _, ev := range state {
		out = append(out, ev)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Depth() < out[j].Depth() })
	return out
}

// authChain returns the auth chain of evs (not evs themselves unless cited), as far as the
// fake knows it.
func (h *hostedRoom) authChain(evs []gomatrixserverlib.PDU) []gomatrixserverlib.PDU {
	seen := map[string]bool{}
	var out []gomatrixserverlib.PDU
	var queue []string
	for _, ev := range evs {
		queue = append(queue, ev.AuthEventIDs()...)
	}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		if seen[id] {
			continue
		}
		seen[id] = true
		if ev, ok := h.events[id]; ok {
			out = append(out, ev)
			queue = append(queue, ev.AuthEventIDs()...)
		}
	}
	return out
}

// missingReq is a get_missing_events request Lattice made.
type missingReq struct {
	Limit    int      `json:"limit"`
	MinDepth int64    `json:"min_depth"`
	Earliest []string `json:"earliest_events"`
	Latest   []string `json:"latest_events"`
}

// interopHost makes the fake server a resident server of the rooms it hosts or joined: it
// answers the federation API from its copies of the rooms, checks every request Lattice
// makes (the X-Matrix signature, the signatures and auth of the PDUs Lattice sends) and
// records what it got.
type interopHost struct {
	fake   *fakeHomeserver
	lat    spec.ServerName
	verify *keyVerifier
	ca     *testCA // the CA both servers' certificates come from (more fakes can join in)

	mu      sync.Mutex
	rooms   map[string]*hostedRoom
	aliases map[string]string // room alias -> room ID
	// missing, when set, answers get_missing_events instead of the walk back from
	// latest_events to earliest_events.
	missing    func(room *hostedRoom, req missingReq) []gomatrixserverlib.PDU
	missingLog []missingReq
	// refuse, when set, answers every federation request of Lattice with 500: a server that
	// only pushes.
	refuse bool
	// backfillCap, when not 0, is the most events one /backfill answer holds, whatever the
	// limit asked (servers cap it: Synapse at 100).
	backfillCap int
	// shortAuthChain holds event IDs the fake leaves out of the auth chains of its /state_ids
	// and /state answers: a server whose auth chains fall short of the full chain.
	shortAuthChain map[string]bool
	sent           []gomatrixserverlib.PDU // PDUs Lattice sent in /send that passed the checks
	leaves         []gomatrixserverlib.PDU // events Lattice sent with send_leave
	failures       []string                // what was wrong with Lattice's requests
}

// newInteropHost makes fake a resident server talking to Lattice server lat.
func newInteropHost(t *testing.T, fake *fakeHomeserver, lat *Server) *interopHost {
	t.Helper()
	h := &interopHost{fake: fake, lat: spec.ServerName(lat.Name), rooms: map[string]*hostedRoom{}, aliases: map[string]string{}}
	h.verify = &keyVerifier{keys: map[spec.ServerName]map[gomatrixserverlib.KeyID]ed25519.PublicKey{
		h.lat:     publishedKeys(t, fake, h.lat),
		fake.name: {fake.keyID: fake.priv.Public().(ed25519.PublicKey)},
	}}
	fake.setExtra(h.serve)
	return h
}

// fail records something wrong with a request of Lattice.
func (h *interopHost) fail(format string, args ...any) {
	h.mu.Lock()
	h.failures = append(h.failures, fmt.Sprintf(format, args...))
	h.mu.Unlock()
}

// checkNoFailures fails the test with every problem the fake found in Lattice's requests.
func (h *interopHost) checkNoFailures(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range h.failures {
		t.Errorf("the foreign server found a problem in a request from Lattice: %s", f)
	}
	h.failures = nil
}

// sentByLattice returns the PDU with eventID that Lattice sent in a /send transaction.
func (h *interopHost) sentByLattice(eventID string) gomatrixserverlib.PDU {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.sent {
		if p.EventID() == eventID {
			return p
		}
	}
	return nil
}

// waitSent waits until Lattice has sent a PDU matching match to the fake (timeout), and
// returns it.
func (h *interopHost) waitSent(timeout time.Duration, match func(gomatrixserverlib.PDU) bool) gomatrixserverlib.PDU {
	var found gomatrixserverlib.PDU
	poll(timeout, 100*time.Millisecond, func() (bool, string) {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, p := range h.sent {
			if match(p) {
				found = p
				return true, ""
			}
		}
		return false, ""
	})
	return found
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	js, _ := json.Marshal(v)
	w.WriteHeader(status)
	_, _ = w.Write(js)
}

func notFound(w http.ResponseWriter, what string) {
	writeJSON(w, 404, map[string]string{"errcode": "M_NOT_FOUND", "error": what})
}

// serve answers the federation requests of Lattice (fakeHomeserver.extra); the version and
// key endpoints are left to the default handler.
func (h *interopHost) serve(w http.ResponseWriter, r *http.Request) bool {
	path := r.URL.Path
	if !strings.HasPrefix(path, "/_matrix/federation/") || path == "/_matrix/federation/v1/version" {
		return false
	}
	fr, errResp := fclient.VerifyHTTPRequest(r, time.Now(), h.fake.name, nil, h.verify)
	if fr == nil {
		h.fail("%s %s: X-Matrix authentication fails: %d %v", r.Method, r.URL.RequestURI(), errResp.Code, errResp.JSON)
		writeJSON(w, errResp.Code, errResp.JSON)
		return true
	}
	if fr.Origin() != h.lat {
		h.fail("%s %s: origin %s, want %s", r.Method, path, fr.Origin(), h.lat)
	}
	parts := strings.Split(strings.TrimPrefix(path, "/_matrix/federation/"), "/")
	if len(parts) < 2 {
		return false
	}
	route := r.Method + " " + parts[0] + "/" + parts[1]
	if parts[1] == "query" && len(parts) > 2 {
		route += "/" + parts[2]
	}
	arg := func(i int) string {
		if i+2 < len(parts) {
			return parts[i+2]
		}
		return ""
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.refuse {
		writeJSON(w, 500, map[string]string{"errcode": "M_UNKNOWN", "error": "this server answers nothing"})
		return true
	}
	room := h.rooms[arg(0)]
	switch route {
	case "GET v1/query/directory":
		alias := r.URL.Query().Get("room_alias")
		if id, ok := h.aliases[alias]; ok {
			writeJSON(w, 200, map[string]any{"room_id": id, "servers": []spec.ServerName{h.fake.name}})
		} else {
			notFound(w, "no such alias "+alias)
		}
	case "GET v1/make_join", "GET v1/make_leave":
		membership := strings.TrimPrefix(parts[1], "make_")
		if room == nil {
			notFound(w, "unknown room")
			return true
		}
		h.makeMembership(w, r, room, arg(1), membership)
	case "PUT v2/send_join", "PUT v2/send_leave":
		if room == nil {
			notFound(w, "unknown room")
			return true
		}
		h.sendMembership(w, fr, room, arg(1), strings.TrimPrefix(parts[1], "send_"))
	case "PUT v1/send":
		h.receiveTxn(w, fr)
	case "GET v1/event":
		for _, rm := range h.rooms {
			if ev, ok := rm.events[arg(0)]; ok {
				writeJSON(w, 200, h.txn([]gomatrixserverlib.PDU{ev}))
				return true
			}
		}
		notFound(w, "unknown event")
	case "GET v1/event_auth":
		var ev gomatrixserverlib.PDU
		if room != nil {
			ev = room.events[arg(1)]
		}
		if ev == nil {
			notFound(w, "unknown event")
			return true
		}
		writeJSON(w, 200, map[string]any{"auth_chain": pduRaws(room.authChain([]gomatrixserverlib.PDU{ev}))})
	case "GET v1/state_ids", "GET v1/state":
		var before map[string]gomatrixserverlib.PDU
		if room != nil {
			before = room.before[r.URL.Query().Get("event_id")]
		}
		if before == nil {
			notFound(w, "no state known at that event")
			return true
		}
		state := stateList(before)
		var chain []gomatrixserverlib.PDU
		for _, ev := range room.authChain(state) {
			if !h.shortAuthChain[ev.EventID()] {
				chain = append(chain, ev)
			}
		}
		if parts[1] == "state_ids" {
			writeJSON(w, 200, map[string]any{"pdu_ids": pduIDs(state), "auth_chain_ids": pduIDs(chain)})
		} else {
			writeJSON(w, 200, map[string]any{"pdus": pduRaws(state), "auth_chain": pduRaws(chain)})
		}
	case "POST v1/get_missing_events":
		var req missingReq
		if err := json.Unmarshal(fr.Content(), &req); err != nil || room == nil {
			h.failures = append(h.failures, fmt.Sprintf("get_missing_events: body %s: %v (room known: %v)", fr.Content(), err, room != nil))
			notFound(w, "bad request")
			return true
		}
		h.missingLog = append(h.missingLog, req)
		var evs []gomatrixserverlib.PDU
		if h.missing != nil {
			evs = h.missing(room, req)
		} else {
			evs = room.missingEvents(req)
		}
		writeJSON(w, 200, map[string]any{"events": pduRaws(evs)})
	case "GET v1/timestamp_to_event":
		ts, _ := strconv.ParseInt(r.URL.Query().Get("ts"), 10, 64)
		if ev := room.nearTime(ts, r.URL.Query().Get("dir") == "f"); ev != nil {
			writeJSON(w, 200, map[string]any{"event_id": ev.EventID(), "origin_server_ts": ev.OriginServerTS()})
		} else {
			notFound(w, "no event in that direction")
		}
	case "GET v1/backfill":
		if room == nil {
			notFound(w, "unknown room")
			return true
		}
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		if h.backfillCap > 0 {
			limit = min(limit, h.backfillCap)
		}
		writeJSON(w, 200, h.txn(room.backfill(r.URL.Query()["v"], limit)))
	default:
		return false
	}
	return true
}

// txn is a PDU transaction as /event and /backfill answer.
func (h *interopHost) txn(pdus []gomatrixserverlib.PDU) map[string]any {
	return map[string]any{"origin": h.fake.name, "origin_server_ts": time.Now().UnixMilli(), "pdus": pduRaws(pdus)}
}

func pduRaws(pdus []gomatrixserverlib.PDU) []json.RawMessage {
	out := make([]json.RawMessage, 0, len(pdus))
	for _, p := range pdus {
		out = append(out, p.JSON())
	}
	return out
}

func pduIDs(pdus []gomatrixserverlib.PDU) []string {
	out := make([]string, 0, len(pdus))
	for _, p := range pdus {
		out = append(out, p.EventID())
	}
	return out
}

// missingEvents walks back from the prev_events of req.Latest, stopping at req.Earliest and
// at events the fake does not know, and returns at most req.Limit events, oldest first.
func (h *hostedRoom) missingEvents(req missingReq) []gomatrixserverlib.PDU {
	stop := map[string]bool{}
	for _, id := range append(append([]string{}, req.Earliest...), req.Latest...) {
		stop[id] = true
	}
	var out []gomatrixserverlib.PDU
	var queue []string
	for _, id := range req.Latest {
		if ev, ok := h.events[id]; ok {
			queue = append(queue, ev.PrevEventIDs()...)
		}
	}
	for len(queue) > 0 && len(out) < req.Limit {
		id := queue[0]
		queue = queue[1:]
		ev, ok := h.events[id]
		if stop[id] || !ok || ev.Depth() < req.MinDepth {
			continue
		}
		stop[id] = true
		out = append(out, ev)
		queue = append(queue, ev.PrevEventIDs()...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Depth() < out[j].Depth() })
	return out
}

// nearTime returns the DAG event nearest to ts at or after it (forwards) or at or before it,
// nil when there is none (or room is nil).
func (h *hostedRoom) nearTime(ts int64, forwards bool) gomatrixserverlib.PDU {
	if h == nil {
		return nil
	}
	var best gomatrixserverlib.PDU
	for _, id := range h.order {
		ev := h.events[id]
		t := int64(ev.OriginServerTS())
		if (forwards && t >= ts && (best == nil || t < int64(best.OriginServerTS()))) ||
			(!forwards && t <= ts && (best == nil || t >= int64(best.OriginServerTS()))) {
			best = ev
		}
	}
	return best
}

// backfill returns the events from (included) and before them, breadth first, at most limit.
func (h *hostedRoom) backfill(from []string, limit int) []gomatrixserverlib.PDU {
	seen := map[string]bool{}
	var out []gomatrixserverlib.PDU
	queue := append([]string{}, from...)
	for len(queue) > 0 && len(out) < limit {
		id := queue[0]
		queue = queue[1:]
		ev, ok := h.events[id]
		if seen[id] || !ok {
			continue
		}
		seen[id] = true
		out = append(out, ev)
		queue = append(queue, ev.PrevEventIDs()...)
	}
	return out
}

// makeMembership answers make_join and make_leave: a template after the room's extremities
// with the auth events the membership needs.
func (h *interopHost) makeMembership(w http.ResponseWriter, r *http.Request, room *hostedRoom, userID, membership string) {
	if membership == spec.Join {
		ok := false
		for _, v := range r.URL.Query()["ver"] {
			ok = ok || v == string(room.ver.Version())
		}
		if !ok {
			h.failures = append(h.failures, fmt.Sprintf("make_join of %s without ver=%s: %s", room.id, room.ver.Version(), r.URL.RawQuery))
			writeJSON(w, 400, map[string]any{"errcode": "M_INCOMPATIBLE_ROOM_VERSION", "error": "unsupported", "room_version": room.ver.Version()})
			return
		}
	}
	b, err := room.proto(userID, spec.MRoomMember, &userID, map[string]any{"membership": membership})
	if err != nil {
		writeJSON(w, 403, map[string]any{"errcode": "M_FORBIDDEN", "error": err.Error()})
		return
	}
	js, _ := json.Marshal(b)
	var event map[string]any
	_ = json.Unmarshal(js, &event)
	event["origin"], event["origin_server_ts"] = h.fake.name, time.Now().UnixMilli()
	writeJSON(w, 200, map[string]any{"room_version": room.ver.Version(), "event": event})
}

// checkIncoming parses an event Lattice sent in room and runs the checks a resident server
// runs: the format and hashes, the signatures, and the auth rules against the current state.
func (h *interopHost) checkIncoming(room *hostedRoom, raw []byte) (gomatrixserverlib.PDU, error) {
	p, err := room.ver.NewEventFromUntrustedJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("not a valid PDU of room version %s: %v: %s", room.ver.Version(), err, raw)
	}
	if err := gomatrixserverlib.VerifyEventSignatures(context.Background(), p, h.verify, senderUserID); err != nil {
		return p, fmt.Errorf("event %s: signatures do not verify: %v", p.EventID(), err)
	}
	provider, err := room.authProvider()
	if err != nil {
		return p, err
	}
	if err := ownedstate.Allowed(p, provider, senderUserID); err != nil { // gomatrixserverlib's rules, with MSC3757's in its rooms
		return p, fmt.Errorf("event %s (%s) not allowed by the room's state: %v", p.EventID(), p.Type(), err)
	}
	for _, id := range p.AuthEventIDs() {
		if _, ok := room.events[id]; !ok {
			return p, fmt.Errorf("event %s cites an auth event %s the room never had", p.EventID(), id)
		}
	}
	return p, nil
}

// sendMembership answers send_join (v2) and send_leave (v2).
func (h *interopHost) sendMembership(w http.ResponseWriter, fr *fclient.FederationRequest, room *hostedRoom, eventID, membership string) {
	p, err := h.checkIncoming(room, fr.Content())
	if err == nil {
		m, _ := p.Membership()
		switch {
		case p.EventID() != eventID:
			err = fmt.Errorf("send_%s of %s carries event %s", membership, eventID, p.EventID())
		case p.Type() != spec.MRoomMember || m != membership || p.StateKey() == nil || *p.StateKey() != string(p.SenderID()):
			err = fmt.Errorf("send_%s with a %s event of membership %q", membership, p.Type(), m)
		case p.SenderID().ToUserID() == nil || p.SenderID().ToUserID().Domain() != fr.Origin():
			err = fmt.Errorf("send_%s of %s by %s", membership, p.SenderID(), fr.Origin())
		}
	}
	if err != nil {
		h.failures = append(h.failures, "send_"+membership+": "+err.Error())
		writeJSON(w, 400, map[string]any{"errcode": "M_INVALID_PARAM", "error": err.Error()})
		return
	}
	state := stateList(room.state)
	room.add(p)
	if membership == spec.Leave {
		h.leaves = append(h.leaves, p)
		writeJSON(w, 200, map[string]any{})
		return
	}
	writeJSON(w, 200, map[string]any{
		"origin": h.fake.name, "event": json.RawMessage(p.JSON()), "members_omitted": false,
		"state": pduRaws(state), "auth_chain": pduRaws(room.authChain(append(state, p))),
	})
}

// receiveTxn answers /send: each PDU is checked as a resident server would and added to its
// room; every PDU gets its result.
func (h *interopHost) receiveTxn(w http.ResponseWriter, fr *fclient.FederationRequest) {
	var txn struct {
		Origin string            `json:"origin"`
		PDUs   []json.RawMessage `json:"pdus"`
	}
	if err := json.Unmarshal(fr.Content(), &txn); err != nil || txn.PDUs == nil {
		h.failures = append(h.failures, fmt.Sprintf("/send: not a transaction with pdus (%v): %.300s", err, fr.Content()))
	}
	if spec.ServerName(txn.Origin) != fr.Origin() {
		h.failures = append(h.failures, fmt.Sprintf("/send: transaction origin %q, request origin %q", txn.Origin, fr.Origin()))
	}
	results := map[string]any{}
	for _, raw := range txn.PDUs {
		var head struct {
			RoomID string `json:"room_id"`
		}
		_ = json.Unmarshal(raw, &head)
		room := h.rooms[head.RoomID]
		if room == nil {
			h.failures = append(h.failures, fmt.Sprintf("/send: PDU of a room the fake is not in: %.300s", raw))
			continue
		}
		p, err := h.checkIncoming(room, raw)
		if err != nil {
			h.failures = append(h.failures, "/send: "+err.Error())
			if p != nil {
				results[p.EventID()] = map[string]string{"error": err.Error()}
			}
			continue
		}
		results[p.EventID()] = map[string]any{}
		h.sent = append(h.sent, p)
		room.add(p)
	}
	writeJSON(w, 200, map[string]any{"pdus": results})
}

// createRoom makes a public room of version ver on the fake server, created by creator (a
// user of the fake), with shared history, the given name and, when alias is not empty, that
// alias published for GET /query/directory.
func (h *interopHost) createRoom(t *testing.T, ver gomatrixserverlib.RoomVersion, creator, name, alias string) *hostedRoom {
	t.Helper()
	verImpl := gomatrixserverlib.MustGetRoomVersion(ver)
	content := map[string]any{"room_version": string(ver)}
	roomID := ""
	if !verImpl.DomainlessRoomIDs() {
		b := make([]byte, 9)
		_, _ = rand.Read(b)
		roomID = "!" + hex.EncodeToString(b) + ":" + string(h.fake.name)
		content["creator"] = creator
	}
	js, _ := json.Marshal(content)
	empty := ""
	create, err := verImpl.NewEventBuilderFromProtoEvent(&gomatrixserverlib.ProtoEvent{
		SenderID: creator, RoomID: roomID, Type: spec.MRoomCreate, StateKey: &empty, Depth: 1,
		Content: js, PrevEvents: []string{}, AuthEvents: []string{},
	}).Build(time.Now(), h.fake.name, h.fake.keyID, h.fake.priv)
	if err != nil {
		t.Fatalf("building the create event of a v%s room: %v", ver, err)
	}
	roomID = create.RoomID().String()
	if verImpl.DomainlessRoomIDs() && roomID != "!"+create.EventID()[1:] {
		t.Fatalf("v%s room ID %s is not the create event's ID %s with '!'", ver, roomID, create.EventID())
	}
	room := newHostedRoom(roomID, verImpl)
	room.add(create)
	h.mu.Lock()
	h.rooms[roomID] = room
	if alias != "" {
		h.aliases[alias] = roomID
	}
	h.mu.Unlock()
	users := map[string]any{}
	if !verImpl.DomainlessRoomIDs() {
		users[creator] = 100 // in v12 the creator's power is above any level and must not be listed
	}
	h.emit(t, room, creator, spec.MRoomMember, &creator, map[string]any{"membership": "join", "displayname": "host"})
	h.emit(t, room, creator, spec.MRoomPowerLevels, &empty, map[string]any{
		"users": users, "users_default": 0, "events_default": 0, "state_default": 50,
		"ban": 50, "kick": 50, "redact": 50, "invite": 0, "events": map[string]any{},
	})
	h.emit(t, room, creator, spec.MRoomJoinRules, &empty, map[string]any{"join_rule": "public"})
	h.emit(t, room, creator, spec.MRoomHistoryVisibility, &empty, map[string]any{"history_visibility": "shared"})
	h.emit(t, room, creator, "m.room.name", &empty, map[string]any{"name": name})
	if alias != "" {
		h.emit(t, room, creator, "m.room.canonical_alias", &empty, map[string]any{"alias": alias})
	}
	return room
}

// emit builds an event of the fake server in room, after everything the fake has of it, and
// adds it to the room (it is not sent anywhere).
func (h *interopHost) emit(t *testing.T, room *hostedRoom, sender, evType string, stateKey *string, content any) gomatrixserverlib.PDU {
	t.Helper()
	return h.emitTimed(t, time.Now(), room, sender, evType, stateKey, content)
}

// emitTimed is emit with the event's origin_server_ts given.
func (h *interopHost) emitTimed(t *testing.T, ts time.Time, room *hostedRoom, sender, evType string, stateKey *string, content any) gomatrixserverlib.PDU {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	b, err := room.proto(sender, evType, stateKey, content)
	if err != nil {
		t.Fatalf("building %s in %s: %v", evType, room.id, err)
	}
	ev, err := b.Build(ts, h.fake.name, h.fake.keyID, h.fake.priv)
	if err != nil {
		t.Fatalf("building %s in %s: %v", evType, room.id, err)
	}
	provider, _ := room.authProvider()
	if err := gomatrixserverlib.Allowed(ev, provider, senderUserID); err != nil {
		t.Fatalf("the fake's own %s event in %s fails auth: %v", evType, room.id, err)
	}
	room.add(ev)
	return ev
}

// adopt makes a room the fake joined with fakeHomeserver.join (a Lattice room) one the fake
// serves: its state, with the join as the only forward extremity.
func (h *interopHost) adopt(joined *fakeRoom) *hostedRoom {
	room := newHostedRoom(joined.roomID, joined.ver)
	join := joined.latest
	for key, ev := range joined.state {
		room.events[ev.EventID()] = ev
		if ev.EventID() != join.EventID() {
			room.state[key] = ev
		}
		room.depth = max(room.depth, ev.Depth())
	}
	room.add(join)
	h.mu.Lock()
	h.rooms[room.id] = room
	h.mu.Unlock()
	return room
}

// sendToLattice sends PDUs from the fake in one transaction and fails the test unless
// Lattice accepted every one.
func (h *interopHost) sendToLattice(t *testing.T, pdus ...gomatrixserverlib.PDU) {
	t.Helper()
	r := h.fake.sendPDUs(t, h.lat, pduRaws(pdus))
	if r.Status != 200 {
		t.Fatalf("/send to Lattice: %d %s", r.Status, r.Raw)
	}
	for _, p := range pdus {
		if res, ok := pduResult(r, p.EventID()); !ok || str(res, "error") != "" {
			t.Errorf("/send to Lattice: %s (%s) not accepted: %s", p.EventID(), p.Type(), r.Raw)
		}
	}
}

// message is the content of an m.text message.
func message(body string) map[string]any { return map[string]any{"msgtype": "m.text", "body": body} }

// startInterop starts a Lattice server and the fake server resident beside it.
func startInterop(t *testing.T) (*Server, *interopHost) {
	t.Helper()
	return startInteropOn(t, "127.0.0.1")
}

// startInteropOn is startInterop with the fake server on host (see startFakeHomeserverOn).
func startInteropOn(t *testing.T, host string) (*Server, *interopHost) {
	t.Helper()
	ca := newTestCA(t)
	lat := startFederatedServer(t, ca)
	fake := startFakeHomeserverOn(t, ca, host)
	h := newInteropHost(t, fake, lat)
	h.ca = ca
	return lat, h
}

// joinLatticeRoom has alice create a public room of version ver on Lattice that eve (of the
// fake server) joins with make_join/send_join; it returns the fake's copy and alice's
// syncer, which has seen eve's join.
func joinLatticeRoom(t *testing.T, lat *Server, h *interopHost, alice *Client, ver gomatrixserverlib.RoomVersion) (*hostedRoom, *syncer, string) {
	t.Helper()
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Gaps", "room_version": string(ver)})
	as := newSyncer(alice, bigTimeline)
	as.once(0)
	eve := "@eve:" + string(h.fake.name)
	joined, err := h.fake.join(t, h.lat, roomID, eve)
	if err != nil {
		t.Fatalf("the fake server joining %s as %s: %v; server log:\n%s", roomID, eve, err, lat.Log())
	}
	if joined.ver.Version() != ver {
		t.Fatalf("alice's room %s has version %s, want %s", roomID, joined.ver.Version(), ver)
	}
	room := h.adopt(joined)
	as.waitEvent(roomID, joined.latest.EventID())
	return room, as, eve
}

// interopVersions are the room versions the interop tests run in: 10, the last with
// server-named room IDs and a creator field, and 12, whose room IDs are the create event's
// hash and whose creators outrank every power level.
var interopVersions = []gomatrixserverlib.RoomVersion{gomatrixserverlib.RoomVersionV10, gomatrixserverlib.RoomVersionV12}

// TestFederationInteropGapFilledByGetMissingEvents: the fake server, joined to a Lattice
// room, makes messages one after another and sends only the last. Lattice must fetch the
// others with POST /get_missing_events (the fake answers from its DAG, at most the limit
// Lattice asks for, the newest first as a walk back from latest_events finds them), accept
// them all, and show them in alice's /sync once each, in order, and in /messages in the same
// order. "5" is a gap of 4 events; "30" one larger than one get_missing_events answer.
func TestFederationInteropGapFilledByGetMissingEvents(t *testing.T) {
	lat, h := startInterop(t)
	for _, ver := range interopVersions {
		for _, n := range []int{5, 30} {
			t.Run(fmt.Sprintf("v%s/%d", ver, n), func(t *testing.T) {
				testGapFilled(t, lat, h, ver, n)
			})
		}
	}
}

func testGapFilled(t *testing.T, lat *Server, h *interopHost, ver gomatrixserverlib.RoomVersion, n int) {
	alice := lat.Register(t, fmt.Sprintf("alice%s-%d", ver, n))
	room, as, eve := joinLatticeRoom(t, lat, h, alice, ver)
	h.mu.Lock()
	logStart := len(h.missingLog)
	h.mu.Unlock()
	var chain []string
	var last gomatrixserverlib.PDU
	for i := 1; i <= n; i++ {
		last = h.emit(t, room, eve, "m.room.message", nil, message(fmt.Sprintf("E%d", i)))
		chain = append(chain, last.EventID())
	}
	h.sendToLattice(t, last)

	if missing := syncUntilSeen(t, as, chain, 30*time.Second); len(missing) > 0 {
		h.mu.Lock()
		reqs := fmt.Sprintf("%+v", h.missingLog[logStart:])
		h.mu.Unlock()
		t.Errorf("alice's /sync lacks %d of the %d events 30 s after the last arrived: missing %v; get_missing_events requests: %s; fake saw %v; last sync %.1500s",
			len(missing), n, missing, reqs, h.fake.requestsLike("/_matrix/federation/"), as.last.Raw)
	}
	checkSameIDs(t, "alice's /sync timeline of the chain", onlyIDs(ids(as.tl[room.id]), chain), chain)
	checkNoDuplicates(t, "alice's /sync timeline", as.tl[room.id])
	want := map[string]bool{}
	for _, id := range chain {
		want[id] = true
	}
	checkSameIDs(t, "alice's /messages of the chain", messagesOrder(alice, room.id, want), chain)

	h.mu.Lock()
	reqs := append([]missingReq{}, h.missingLog[logStart:]...)
	h.mu.Unlock()
	if len(reqs) == 0 {
		t.Errorf("Lattice never asked the fake for the missing events (requests: %v)", h.fake.requestsLike("/_matrix/federation/"))
	} else if fmt.Sprint(reqs[0].Latest) != fmt.Sprint([]string{last.EventID()}) || len(reqs[0].Earliest) == 0 || reqs[0].Limit <= 0 {
		t.Errorf("get_missing_events request %+v: want latest_events [the last event %s], Lattice's forward extremities as earliest_events and a limit", reqs[0], last.EventID())
	}
	t.Logf("get_missing_events requests: %d", len(reqs))
	if r := h.fake.requestsLike("/state_ids/" + url.PathEscape(room.id)); len(r) > 0 {
		t.Errorf("Lattice asked /state_ids although get_missing_events could close the gap: %v", r)
	}

	// Alice answers: her event follows the last, and the fake accepts it.
	reply := say(alice, room.id, "after the chain")
	if p := h.waitSent(30*time.Second, func(p gomatrixserverlib.PDU) bool { return p.EventID() == reply }); p == nil {
		t.Errorf("alice's reply %s never reached the fake server in a /send transaction (30 s)", reply)
	} else if fmt.Sprint(p.PrevEventIDs()) != fmt.Sprint([]string{last.EventID()}) {
		t.Errorf("alice's reply has prev_events %v, want [the last event %s]", p.PrevEventIDs(), last.EventID())
	}
	h.checkNoFailures(t)
}

// TestFederationInteropGapFilledByStateIDs: the gap is too large for get_missing_events —
// the fake answers it with no events — so Lattice must take the state before G24 (G25's
// prev_event) from GET /state_ids/{roomId}?event_id=G24, fetch what it lacks with GET
// /event, and accept G25. Inside the gap frank (of the fake) joined and eve changed her
// display name; G25 is frank's. Alice's /sync shows G25, and the state changes of the gap
// reach her: in the incremental /sync (the spec's "updates to the state between since and
// the start of the timeline"), in a new initial /sync and in GET /state.
func TestFederationInteropGapFilledByStateIDs(t *testing.T) {
	lat, h := startInterop(t)
	h.mu.Lock()
	h.missing = func(*hostedRoom, missingReq) []gomatrixserverlib.PDU { return nil }
	h.mu.Unlock()
	for _, ver := range interopVersions {
		t.Run("v"+string(ver), func(t *testing.T) { testGapStateIDs(t, lat, h, ver) })
	}
}

func testGapStateIDs(t *testing.T, lat *Server, h *interopHost, ver gomatrixserverlib.RoomVersion) {
	alice := lat.Register(t, "alice"+string(ver))
	room, as, eve := joinLatticeRoom(t, lat, h, alice, ver)
	frank := "@frank:" + string(h.fake.name)
	var evs []gomatrixserverlib.PDU
	for i := 1; i <= 25; i++ {
		var ev gomatrixserverlib.PDU
		switch i {
		case 5:
			ev = h.emit(t, room, frank, spec.MRoomMember, &frank, map[string]any{"membership": "join", "displayname": "frank"})
		case 10:
			ev = h.emit(t, room, eve, spec.MRoomMember, &eve, map[string]any{"membership": "join", "displayname": "eve renamed"})
		case 25:
			ev = h.emit(t, room, frank, "m.room.message", nil, message("G25 from frank"))
		default:
			ev = h.emit(t, room, eve, "m.room.message", nil, message(fmt.Sprintf("G%d", i)))
		}
		evs = append(evs, ev)
	}
	last, prev := evs[24], evs[23]
	frankJoin, eveRename := evs[4], evs[9]
	sinceBefore := as.since
	h.sendToLattice(t, last)

	if missing := syncUntilSeen(t, as, []string{last.EventID()}, 30*time.Second); len(missing) > 0 {
		t.Errorf("G25 %s never reached alice's /sync (30 s); fake saw %v; last sync %.1500s",
			last.EventID(), h.fake.requestsLike("/_matrix/federation/"), as.last.Raw)
	}
	if len(h.fake.requestsLike("/get_missing_events/"+url.PathEscape(room.id))) == 0 {
		t.Errorf("Lattice did not try get_missing_events first: %v", h.fake.requestsLike("/_matrix/federation/"))
	}
	stateIDs := h.fake.requestsLike("/state_ids/" + url.PathEscape(room.id))
	if len(stateIDs) == 0 {
		t.Errorf("Lattice never asked GET /state_ids for the gap; fake saw %v", h.fake.requestsLike("/_matrix/federation/"))
	} else if !strings.Contains(stateIDs[0], "event_id="+url.QueryEscape(prev.EventID())) {
		t.Errorf("Lattice asked %s, want the state at G24 %s (G25's prev_event)", stateIDs[0], prev.EventID())
	}
	// G24 and eve's rename come with GET /event; frank's join, an auth event of G25, may
	// already have come with GET /event_auth.
	for what, ev := range map[string]gomatrixserverlib.PDU{"G24": prev, "eve's rename": eveRename} {
		if len(h.fake.requestsLike("/v1/event/"+url.PathEscape(ev.EventID()))) == 0 && len(h.fake.requestsLike("/v1/event/"+ev.EventID())) == 0 {
			t.Errorf("Lattice never fetched %s %s with GET /event; fake saw %v", what, ev.EventID(), h.fake.requestsLike("/_matrix/federation/"))
		}
	}

	// The gap's state changes, as alice's client learns them.
	inSync := map[string]bool{}
	for _, e := range as.tl[room.id] {
		inSync[evID(e)] = true
	}
	for _, e := range list(obj(as.last.Body, "rooms", "join", room.id, "state"), "events") {
		inSync[evID(e)] = true
	}
	for what, ev := range map[string]gomatrixserverlib.PDU{"frank's join": frankJoin, "eve's rename": eveRename} {
		if !inSync[ev.EventID()] {
			t.Errorf("%s %s (in the gap) is in neither the state nor the timeline of alice's incremental /sync that brought G25: her client never learns of it; that sync: %.2000s",
				what, ev.EventID(), as.last.Raw)
		}
	}
	// With use_state_after (MSC4222, the spec's fix for state that changes in a gap), both
	// the incremental and an initial /sync must give the state after G25 in state_after.
	for _, since := range []string{sinceBefore, ""} {
		q := url.Values{"filter": {bigTimeline}, "use_state_after": {"true"}, "timeout": {"0"}}
		if since != "" {
			q.Set("since", since)
		}
		resp := alice.MustDo("GET", "/_matrix/client/v3/sync?"+q.Encode(), nil)
		got := map[string]bool{}
		for _, e := range list(obj(resp.Body, "rooms", "join", room.id, "state_after"), "events") {
			got[evID(e)] = true
		}
		for what, ev := range map[string]gomatrixserverlib.PDU{"frank's join": frankJoin, "eve's rename": eveRename} {
			if !got[ev.EventID()] {
				t.Errorf("/sync?use_state_after=true since %q: %s %s is not in state_after: %.1500s", since, what, ev.EventID(), resp.Raw)
			}
		}
	}
	initial := alice.Sync("", bigTimeline, 0)
	seen := map[string]bool{}
	for _, sect := range []string{"state", "timeline"} {
		for _, e := range list(obj(initial.Body, "rooms", "join", room.id, sect), "events") {
			seen[evID(e)] = true
		}
	}
	st, r := roomState(alice, room.id)
	if st == nil {
		t.Fatalf("GET state: %d %s", r.Status, r.Raw)
	}
	for what, ev := range map[string]gomatrixserverlib.PDU{"frank's join": frankJoin, "eve's rename": eveRename} {
		if !seen[ev.EventID()] {
			// "state" is the state at the start of the timeline, which here begins before the
			// gap: the spec's legacy format cannot carry this change (state_after can).
			t.Logf("%s %s is not in alice's initial /sync without use_state_after (the timeline starts before the gap)", what, ev.EventID())
		}
		if got := evID(st[ev.Type()+"|"+*ev.StateKey()]); got != ev.EventID() {
			t.Errorf("GET state: %s|%s is %s, want %s %s", ev.Type(), *ev.StateKey(), got, what, ev.EventID())
		}
	}

	reply := say(alice, room.id, "after the gap")
	if p := h.waitSent(30*time.Second, func(p gomatrixserverlib.PDU) bool { return p.EventID() == reply }); p == nil {
		t.Errorf("alice's reply %s never reached the fake server (30 s)", reply)
	} else {
		// The old forward extremity (eve's join) may stay one: Lattice never got the events
		// that follow it, only the state at G24.
		var hasLast bool
		for _, id := range p.PrevEventIDs() {
			hasLast = hasLast || id == last.EventID()
		}
		if !hasLast {
			t.Errorf("alice's reply has prev_events %v, which lack G25 %s", p.PrevEventIDs(), last.EventID())
		}
		t.Logf("alice's reply after the gap has prev_events %v (G25 %s)", p.PrevEventIDs(), last.EventID())
	}
	h.checkNoFailures(t)
}

// TestFederationInteropJoinForeignRoom: Lattice is the joining server of rooms hosted by a
// server that is not Lattice, in room versions 10 and 12 (v12 room IDs are the create
// event's hash). alice joins by alias (GET /query/directory, make_join, send_join v2),
// sends a message the fake receives in /send with valid signatures, and sees the fake's
// reply. The fake invites bob (PUT /v2/invite: Lattice countersigns), bob sees the invite and
// rejects it. carol joins another room by ID with ?via=. In a room no Lattice user is in,
// the fake invites dave, who rejects through make_leave/send_leave.
func TestFederationInteropJoinForeignRoom(t *testing.T) {
	lat, h := startInterop(t)
	for _, ver := range []gomatrixserverlib.RoomVersion{gomatrixserverlib.RoomVersionV10, gomatrixserverlib.RoomVersionV12} {
		t.Run("v"+string(ver), func(t *testing.T) { testJoinForeignRoom(t, lat, h, ver) })
	}
}

func testJoinForeignRoom(t *testing.T, lat *Server, h *interopHost, ver gomatrixserverlib.RoomVersion) {
	v := string(ver)
	alice, bob, carol, dave := lat.Register(t, "alice"+v), lat.Register(t, "bob"+v), lat.Register(t, "carol"+v), lat.Register(t, "dave"+v)
	host := "@host:" + string(h.fake.name)
	alias := "#interop-v" + v + ":" + string(h.fake.name)
	room := h.createRoom(t, ver, host, "Foreign v"+v, alias)
	as, bs := newSyncer(alice, bigTimeline), newSyncer(bob, bigTimeline)
	as.once(0)
	bs.once(0)

	// alice joins by alias.
	r := joinRoom(alice, alias)
	if r.Status != 200 || str(r.Body, "room_id") != room.id {
		t.Fatalf("alice joining %s (room %s on the fake): %d %s, want 200 with that room_id; fake saw %v",
			alias, room.id, r.Status, r.Raw, h.fake.requestsLike("/_matrix/federation/"))
	}
	for _, p := range []string{"/query/directory", "/make_join/", "/v2/send_join/"} {
		if len(h.fake.requestsLike(p)) == 0 {
			t.Errorf("joining by alias, Lattice never called %s on the fake", p)
		}
	}
	h.mu.Lock()
	joinEv := room.state["m.room.member|"+alice.UserID]
	h.mu.Unlock()
	if joinEv == nil {
		t.Fatalf("the fake has no join of alice after her join returned 200")
	}
	if m, resp := joinedMembers(alice, room.id); !m[alice.UserID] || !m[host] {
		t.Errorf("alice's joined_members after the join: %s, want alice and %s", resp.Raw, host)
	}
	if r := stateEvent(alice, room.id, "m.room.name", ""); str(r.Body, "name") != "Foreign v"+v {
		t.Errorf("the room's name on Lattice after the join: %d %s", r.Status, r.Raw)
	}

	// alice's message reaches the fake, signed by Lattice.
	msg := say(alice, room.id, "hello from Lattice v"+v)
	p := h.waitSent(30*time.Second, func(p gomatrixserverlib.PDU) bool { return p.EventID() == msg })
	if p == nil {
		h.checkNoFailures(t)
		t.Fatalf("alice's message %s never reached the fake in a /send transaction (30 s); fake saw %v; server log:\n%s",
			msg, h.fake.requestsLike("/_matrix/federation/"), lat.Log())
	}
	if err := gomatrixserverlib.VerifyEventSignatures(context.Background(), p, h.verify, senderUserID); err != nil {
		t.Errorf("alice's message as the fake received it: %v", err)
	}
	var content map[string]any
	_ = json.Unmarshal(p.Content(), &content)
	if content["body"] != "hello from Lattice v"+v || string(p.SenderID()) != alice.UserID || fmt.Sprint(p.PrevEventIDs()) != fmt.Sprint([]string{joinEv.EventID()}) {
		t.Errorf("alice's message as received: sender %s, content %v, prev_events %v; want alice, the text, [her join %s]",
			p.SenderID(), content, p.PrevEventIDs(), joinEv.EventID())
	}

	// The fake answers.
	answer := h.emit(t, room, host, "m.room.message", nil, message("hello from the foreign server"))
	h.sendToLattice(t, answer)
	if missing := syncUntilSeen(t, as, []string{answer.EventID()}, 30*time.Second); len(missing) > 0 {
		t.Errorf("the fake's message %s never reached alice's /sync (30 s); last sync %.1500s", answer.EventID(), as.last.Raw)
	}

	// The fake invites bob while alice is in the room: Lattice countersigns and the invite
	// reaches Lattice's copy of the room through /send, as it does for every resident server.
	invite := h.inviteLattice(t, room, host, bob.UserID)
	if invite != nil {
		h.sendToLattice(t, invite)
		if !syncInvite(t, bs, room.id, "Foreign v"+v) {
			t.Errorf("bob never saw the invite to %s in /sync rooms.invite (30 s); last sync %.1500s", room.id, bs.last.Raw)
		} else {
			if r := call(bob, "POST", "/_matrix/client/v3/rooms/"+esc(room.id)+"/leave", map[string]any{}); r.Status != 200 {
				t.Errorf("bob rejecting the invite: %d %s", r.Status, r.Raw)
			}
			leave := h.waitSent(30*time.Second, func(p gomatrixserverlib.PDU) bool {
				m, _ := p.Membership()
				return p.Type() == spec.MRoomMember && p.StateKey() != nil && *p.StateKey() == bob.UserID && m == spec.Leave
			})
			if leave == nil {
				t.Errorf("bob's rejection of the invite never reached the fake (30 s); fake saw %v", h.fake.requestsLike("/_matrix/federation/"))
			}
		}
	}

	// carol joins another room by ID with ?via=.
	room2 := h.createRoom(t, ver, host, "By ID v"+v, "")
	r = joinRoom(carol, room2.id, string(h.fake.name))
	if r.Status != 200 || str(r.Body, "room_id") != room2.id {
		t.Errorf("carol joining %s by ID with via=%s: %d %s, want 200", room2.id, h.fake.name, r.Status, r.Raw)
	} else {
		msg2 := say(carol, room2.id, "carol was here")
		if h.waitSent(30*time.Second, func(p gomatrixserverlib.PDU) bool { return p.EventID() == msg2 }) == nil {
			t.Errorf("carol's message %s in the room joined by ID never reached the fake (30 s)", msg2)
		}
	}

	// A room without Lattice users: dave's rejection must go through the fake.
	room3 := h.createRoom(t, ver, host, "Not joined v"+v, "")
	ds := newSyncer(dave, bigTimeline)
	ds.once(0)
	if h.inviteLattice(t, room3, host, dave.UserID) == nil {
		return
	}
	if !syncInvite(t, ds, room3.id, "Not joined v"+v) {
		t.Fatalf("dave never saw the invite to %s in /sync rooms.invite (30 s); last sync %.1500s", room3.id, ds.last.Raw)
	}
	if r := call(dave, "POST", "/_matrix/client/v3/rooms/"+esc(room3.id)+"/leave", map[string]any{}); r.Status != 200 {
		t.Errorf("dave rejecting the invite: %d %s", r.Status, r.Raw)
	}
	if len(h.fake.requestsLike("/make_leave/")) == 0 {
		t.Errorf("dave's rejection: Lattice never called make_leave on the fake; fake saw %v; server log:\n%s", h.fake.requestsLike("/_matrix/federation/"), lat.Log())
	}
	h.mu.Lock()
	var leave gomatrixserverlib.PDU
	for _, l := range h.leaves {
		if l.StateKey() != nil && *l.StateKey() == dave.UserID && l.RoomID().String() == room3.id {
			leave = l
		}
	}
	h.mu.Unlock()
	if leave == nil {
		t.Errorf("dave's rejection: the fake never got his leave with send_leave; fake saw %v", h.fake.requestsLike("/_matrix/federation/"))
	}
	ok, last := poll(20*time.Second, 0, func() (bool, string) {
		resp := ds.once(1000)
		return obj(resp.Body, "rooms", "leave", room3.id) != nil, string(resp.Raw)
	})
	if !ok {
		t.Errorf("dave's /sync never listed %s under rooms.leave after the rejection (20 s); last sync %.1500s", room3.id, last)
	}
	h.checkNoFailures(t)
}

// inviteLattice has inviter (of the fake) invite a Lattice user with PUT /v2/invite, with
// invite_room_state as full PDUs, and checks the answer: the same event, signed by Lattice
// and by the fake. It adds the invite to the fake's room and returns it (nil on failure).
func (h *interopHost) inviteLattice(t *testing.T, room *hostedRoom, inviter, invitee string) gomatrixserverlib.PDU {
	t.Helper()
	h.mu.Lock()
	b, err := room.proto(inviter, spec.MRoomMember, &invitee, map[string]any{"membership": "invite"})
	var ev gomatrixserverlib.PDU
	if err == nil {
		ev, err = b.Build(time.Now(), h.fake.name, h.fake.keyID, h.fake.priv)
	}
	var stripped []json.RawMessage
	for _, k := range []string{"m.room.create|", "m.room.join_rules|", "m.room.name|", "m.room.member|" + inviter} {
		if s := room.state[k]; s != nil {
			stripped = append(stripped, s.JSON())
		}
	}
	h.mu.Unlock()
	if err != nil {
		t.Fatalf("building the invite of %s: %v", invitee, err)
	}
	r := h.fake.request(t, "PUT", h.lat, "/_matrix/federation/v2/invite/"+url.PathEscape(room.id)+"/"+url.PathEscape(ev.EventID()),
		map[string]any{"room_version": room.ver.Version(), "event": json.RawMessage(ev.JSON()), "invite_room_state": stripped})
	if r.Status != 200 {
		t.Errorf("PUT /v2/invite of %s to %s: %d %s, want 200", invitee, room.id, r.Status, r.Raw)
		return nil
	}
	var body struct {
		Event json.RawMessage `json:"event"`
	}
	_ = json.Unmarshal(r.Raw, &body)
	signed, err := room.ver.NewEventFromUntrustedJSON(body.Event)
	if err != nil {
		t.Errorf("PUT /v2/invite answer is not a PDU of room version %s: %v: %s", room.ver.Version(), err, r.Raw)
		return nil
	}
	if signed.EventID() != ev.EventID() {
		t.Errorf("PUT /v2/invite answered event %s, want the invite %s unchanged: %s", signed.EventID(), ev.EventID(), r.Raw)
		return nil
	}
	if err := gomatrixserverlib.VerifyEventSignatures(context.Background(), signed, h.verify, senderUserID); err != nil {
		t.Errorf("the invite Lattice returned does not carry valid signatures of both servers: %v: %s", err, r.Raw)
		return nil
	}
	h.mu.Lock()
	room.add(signed)
	h.mu.Unlock()
	return signed
}

// syncInvite syncs until roomID is in rooms.invite with the room's name in invite_state.
func syncInvite(t *testing.T, s *syncer, roomID, name string) bool {
	t.Helper()
	ok, _ := poll(30*time.Second, 0, func() (bool, string) {
		resp := s.once(1000)
		inv := obj(resp.Body, "rooms", "invite", roomID)
		if inv == nil {
			return false, ""
		}
		for _, e := range list(obj(inv, "invite_state"), "events") {
			if evType(e) == "m.room.name" && str(obj(e, "content"), "name") == name {
				return true, ""
			}
		}
		t.Errorf("%s's invite to %s lacks the room name %q in invite_state: %v", s.c.UserID, roomID, name, inv)
		return true, ""
	})
	return ok
}

// TestFederationInteropBackfill: a room on the fake server (versions 10 and 12) has 30
// messages before a Lattice user joins by ID; paging /messages back, the user reads the
// whole history down to m.room.create, which Lattice must backfill from the fake (GET
// /backfill), in the fake's order and without duplicates.
func TestFederationInteropBackfill(t *testing.T) {
	lat, h := startInterop(t)
	for _, ver := range []gomatrixserverlib.RoomVersion{gomatrixserverlib.RoomVersionV10, gomatrixserverlib.RoomVersionV12} {
		t.Run("v"+string(ver), func(t *testing.T) {
			v := string(ver)
			host := "@host:" + string(h.fake.name)
			room := h.createRoom(t, ver, host, "History v"+v, "")
			for i := 0; i < 30; i++ {
				h.emit(t, room, host, "m.room.message", nil, message(fmt.Sprintf("history %d", i)))
			}
			erin := lat.Register(t, "erin"+v)
			if r := joinRoom(erin, room.id, string(h.fake.name)); r.Status != 200 {
				t.Fatalf("erin joining %s via the fake: %d %s", room.id, r.Status, r.Raw)
			}
			h.mu.Lock()
			want := append([]string{}, room.order...)
			h.mu.Unlock()
			got := history(erin, room.id, 10)
			checkNoDuplicates(t, "erin's history", got)
			if len(got) == 0 || evType(got[0]) != "m.room.create" {
				first := "nothing"
				if len(got) > 0 {
					first = evType(got[0]) + " " + evID(got[0])
				}
				t.Errorf("paging /messages back, the oldest event erin reads is %s, want m.room.create (%d events read of %d); fake saw %v",
					first, len(got), len(want), h.fake.requestsLike("/backfill/"))
			}
			checkSameIDs(t, "erin's history vs the fake's DAG", ids(got), want)
			if len(h.fake.requestsLike("/backfill/")) == 0 {
				t.Errorf("Lattice never asked the fake for GET /backfill")
			}
			h.checkNoFailures(t)
		})
	}
}
