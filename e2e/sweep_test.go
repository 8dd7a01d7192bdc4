package e2e

// TestBadInputSweep walks every operation of the specification's client-server and
// server-server OpenAPI definitions (sweep_openapi_test.go reads them) and sends each one
// broken requests (sweep_cases_test.go): mutated path and query parameters, bodies that are
// malformed, not UTF-8, of the wrong types, with floats, huge or deeply nested values, and
// requests without, with bogus and with real authentication; then correctly signed events
// with odd content over federation (sweep_pdus_test.go). Whatever the input, the server must
// answer (sweep_report_test.go):
//   - never a 5xx, except 502 or 504 for a remote server the request made up, and never hang
//     (each request has a 5 second limit);
//   - a body that is valid UTF-8 JSON, unless the spec documents that response as something
//     else (media, redirects);
//   - a 4xx with an errcode (client-server-api "Standard error response"), except the 401 of
//     user-interactive authentication;
//   - and log no Error (our own failure) that no 500 showed.
//
// Every operation gets its baseline cases; the mutations are sampled, about 5,000 requests in
// all (seed printed; LATTICE_SWEEP_SEED chooses it, LATTICE_SWEEP_FULL=1 sends everything,
// LATTICE_SWEEP_BUDGET changes the number of requests). LATTICE_SWEEP_VERBOSE=1 logs the
// answer to every operation's valid-ish request; LATTICE_SWEEP_KEEPLOG=FILE keeps the
// server's log.

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// sweepTimeout bounds every sweep request: a request that takes longer is a failure.
const sweepTimeout = 5 * time.Second

// sweepCase is one request of the sweep.
type sweepCase struct {
	op       *apiOp
	kind     string // the mutation, e.g. "valid", "path:roomId=%FF", "body:float:limit"
	path     string // escaped path and query
	body     []byte // nil: no body
	auth     string // how the request authenticates: see sweepEnv.request
	baseline bool   // always sent, whatever the sample
	method   string // instead of op.Method, for methods the path does not have
	ctype    string // instead of the body's content type; "-" for none
}

// sweepFailure is one response that broke a rule.
type sweepFailure struct {
	class  string // "5xx", "hang", "no-answer", "not-json", "no-errcode", "log-error"
	c      *sweepCase
	status int
	detail string
}

// sweepEnv is the running server, the identities the sweep uses and the real IDs it fills
// parameters with.
type sweepEnv struct {
	t       *testing.T
	srv     *Server
	fake    *fakeHomeserver
	fedHTTP *http.Client
	cliHTTP *http.Client

	lastErrcode string // errcode of the last response, for the summary
	users       int    // users registered so far

	fakeRoom *fakeRoom // the sweep's room as the fake homeserver knows it

	main   *sweepIDs // non-destructive operations
	victim *sweepIDs // operations that may log out, leave or deactivate (see destructive)
	txn    int       // transaction IDs used so far
}

// sweepIDs are the real identifiers of one user's world.
type sweepIDs struct {
	client   *Client
	local    string // password login localpart
	user     string
	device   string
	room     string
	alias    string
	event    string
	mediaID  string
	filterID string
	backup   string
	other    string // another user of the server, to invite
}

func TestBadInputSweep(t *testing.T) {
	dir := specDir(t)
	ops := loadOperations(t, dir)
	for _, op := range ops {
		normalizeAuth(op)
	}

	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("LATTICE_SWEEP_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("LATTICE_SWEEP_SEED=%q: %v", s, err)
		}
		seed = v
	}
	full := os.Getenv("LATTICE_SWEEP_FULL") == "1"
	budget := 5000
	if s := os.Getenv("LATTICE_SWEEP_BUDGET"); s != "" {
		budget, _ = strconv.Atoi(s)
	}

	env := startSweepEnv(t)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))

	// Non-destructive operations first, then those that may end sessions or memberships.
	sort.SliceStable(ops, func(i, j int) bool { return !destructive(ops[i]) && destructive(ops[j]) })
	var all [][]*sweepCase
	total := 0
	for _, op := range ops {
		cases := env.cases(op)
		all = append(all, cases)
		total += len(cases)
	}
	frac := 1.0
	if !full && total > budget {
		frac = float64(budget) / float64(total)
	}
	t.Logf("sweep: %d operations, %d possible requests, seed %d (LATTICE_SWEEP_SEED), sampling %.0f%% (LATTICE_SWEEP_FULL=1 for all)",
		len(ops), total, seed, 100*frac)

	start := time.Now()
	var failures []sweepFailure
	sent := 0
	statuses := map[int]int{}
	gateway := map[string]int{} // allowed 502s and 504s, by operation
	var unimplemented []string
	for _, cases := range all {
		for _, c := range cases {
			if !c.baseline && rng.Float64() >= frac {
				continue
			}
			sent++
			status, fs := env.run(c)
			statuses[status/100*100]++
			if status >= 500 && len(fs) == 0 {
				gateway[c.op.String()]++
			}
			if c.kind == "valid" && status == http.StatusNotFound && env.lastErrcode == "M_UNRECOGNIZED" {
				unimplemented = append(unimplemented, c.op.String())
			}
			if os.Getenv("LATTICE_SWEEP_VERBOSE") == "1" && c.kind == "valid" {
				t.Logf("valid: %s -> %d %s", c.op, status, env.lastErrcode)
			}
			failures = append(failures, fs...)
		}
	}
	n, fs := env.sweepPDUs()
	sent += n
	failures = append(failures, fs...)
	failures = append(failures, env.logFailures()...)
	t.Logf("sweep: sent %d requests over %d operations in %s; responses by class %v (0: no response)",
		sent, len(ops), time.Since(start).Round(time.Millisecond), statuses)
	if len(gateway) > 0 {
		t.Logf("sweep: 502/504 for made-up remote servers (allowed): %v", gateway)
	}
	if len(unimplemented) > 0 {
		t.Logf("sweep: %d operations answer 404 M_UNRECOGNIZED (not implemented): %s", len(unimplemented), strings.Join(unimplemented, ", "))
	}
	reportSweep(t, failures, seed)
}

// normalizeAuth corrects the spec's security requirements where they contradict the API they
// belong to: room_summary names signedRequest for a client endpoint (its authentication is
// optional), and the federation timestamp_to_event names the access token.
func normalizeAuth(op *apiOp) {
	switch {
	case op.Federation && op.Auth == "token":
		op.Auth = "signed"
	case !op.Federation && op.Auth == "signed":
		op.Auth = "optional-token"
	}
}

// destructive reports whether op may end the session, membership or account it runs as;
// those run last, as a throwaway user (sweepEnv.victim).
func destructive(op *apiOp) bool {
	if op.Federation {
		return false
	}
	p := op.Path
	for _, suffix := range []string{"/account/deactivate", "/logout", "/logout/all", "/account/password",
		"/delete_devices", "/upgrade", "/leave", "/forget", "/kick", "/ban", "/account/3pid/delete", "/account/3pid/unbind"} {
		if strings.HasSuffix(p, suffix) && op.Method == "POST" {
			return true
		}
	}
	return op.Method == "DELETE" && (strings.HasSuffix(p, "/devices/{deviceId}") || strings.Contains(p, "/room_keys/") || strings.Contains(p, "/directory/room/"))
}

// startSweepEnv starts a federating server, a fake homeserver that signs requests to it, and
// two users with a room, a message, an alias, media, a filter and a key backup each.
func startSweepEnv(t *testing.T) *sweepEnv {
	ca := newTestCA(t)
	srv := startFederatedServer(t, ca)
	env := &sweepEnv{t: t, srv: srv, fake: startFakeHomeserver(t, ca)}
	if dst := os.Getenv("LATTICE_SWEEP_KEEPLOG"); dst != "" {
		t.Cleanup(func() {
			if b, err := os.ReadFile(srv.logPath); err == nil {
				_ = os.WriteFile(dst, b, 0o600)
			}
		})
	}
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	env.cliHTTP = &http.Client{Timeout: sweepTimeout, CheckRedirect: noRedirect}
	env.fedHTTP = &http.Client{Timeout: sweepTimeout, CheckRedirect: noRedirect,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}
	env.main = env.newIDs("sweepalice")
	env.victim = env.newIDs("sweepvictim")
	env.main.other, env.victim.other = env.victim.user, env.main.user
	// The fake homeserver's user joins the main room, so that its signed requests about the
	// room (state, backfill, events) get past the membership checks.
	room, err := env.fake.join(t, spec.ServerName(srv.Name), env.main.room, "@fake:"+string(env.fake.name))
	if err != nil {
		t.Fatalf("fake homeserver joining the sweep's room: %v", err)
	}
	env.fakeRoom = room
	return env
}

// newIDs registers localpart (with a number after it from the third user on: a replaced
// victim) and makes its world.
func (env *sweepEnv) newIDs(localpart string) *sweepIDs {
	t := env.t
	env.users++
	if env.users > 2 {
		localpart = fmt.Sprintf("%s%d", localpart, env.users)
	}
	c := env.srv.Register(t, localpart)
	ids := &sweepIDs{client: c, local: localpart, user: c.UserID, device: c.DeviceID}
	ids.alias = "#" + localpart + ":" + env.srv.Name
	ids.room = c.CreateRoom(map[string]any{"preset": "public_chat", "room_alias_name": localpart})
	ids.event = c.Send(ids.room, "hello sweep")
	r := c.MustDo("POST", "/_matrix/client/v3/user/"+esc(c.UserID)+"/filter", map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 5}}})
	ids.filterID = str(r.Body, "filter_id")
	r = c.MustDo("POST", "/_matrix/client/v3/room_keys/version", map[string]any{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": map[string]any{"public_key": "pk"}})
	ids.backup = str(r.Body, "version")
	r = c.MustDo("POST", "/_matrix/media/v3/upload?filename=a.txt", []byte("sweep media"))
	if mxc := str(r.Body, "content_uri"); strings.HasPrefix(mxc, "mxc://") {
		ids.mediaID = mxc[strings.LastIndex(mxc, "/")+1:]
	}
	return ids
}

// run sends c and checks the response; it returns the status (0 when there was none).
func (env *sweepEnv) run(c *sweepCase) (int, []sweepFailure) {
	ids := env.main
	if destructive(c.op) {
		ids = env.victim
	}
	req, err := env.request(c, ids)
	if err != nil {
		return 0, []sweepFailure{{class: "request", c: c, detail: err.Error()}}
	}
	client := env.cliHTTP
	if c.op.Federation {
		client = env.fedHTTP
	}
	resp, err := client.Do(req)
	if err != nil {
		// A timeout is a hang; anything else is the connection dropped without an answer.
		class := "no-answer"
		if ne, ok := errors.Unwrap(err).(interface{ Timeout() bool }); ok && ne.Timeout() {
			class = "hang"
		}
		return 0, []sweepFailure{{class: class, c: c, detail: err.Error()}}
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, []sweepFailure{{class: "hang", c: c, status: resp.StatusCode, detail: "reading body: " + err.Error()}}
	}
	if destructive(c.op) && resp.StatusCode < 300 {
		env.refreshVictim()
	}
	var e struct {
		Errcode string `json:"errcode"`
	}
	_ = json.Unmarshal(raw, &e)
	env.lastErrcode = e.Errcode
	return resp.StatusCode, checkResponse(c, resp, raw)
}

// refreshVictim gives the victim a new session, or replaces the victim when it can no
// longer log in (a password change or deactivation the sweep did not expect to succeed).
func (env *sweepEnv) refreshVictim() {
	body := map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": env.victim.local}, "password": "correct horse battery"}
	r := env.srv.Do(env.t, "", "POST", "/_matrix/client/v3/login", body)
	if r.Status == 200 {
		env.victim.client.Token = str(r.Body, "access_token")
		env.victim.device = str(r.Body, "device_id")
		return
	}
	env.victim = env.newIDs("sweepvictim")
	env.victim.other = env.main.user
}

// request builds the HTTP request for c, authenticated as c.auth says: "user" (ids' access
// token), "none", "bogus" (an unknown token or a signature that does not verify),
// "query-bogus" and "header-*" (malformed client authentication), "signed" (by the fake
// homeserver), "signed-elsewhere" (for another destination) and "xmatrix-*" (X-Matrix
// headers that cannot verify).
func (env *sweepEnv) request(c *sweepCase, ids *sweepIDs) (*http.Request, error) {
	path, content := ids.fill(c.path, c.body)
	env.txn++
	path = strings.ReplaceAll(path, "{{txn}}", fmt.Sprintf("sweep%d", env.txn))
	var body io.Reader
	if content != nil {
		body = bytes.NewReader(content)
	}
	base := env.srv.URL
	if c.op.Federation {
		base = "https://" + env.srv.Name
	}
	method := c.op.Method
	if c.method != "" {
		method = c.method
	}
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		return nil, err
	}
	if c.body != nil {
		ct := c.op.BodyType
		if ct == "" {
			ct = "application/json"
		}
		if c.ctype != "" {
			ct = c.ctype
		}
		if ct != "-" {
			req.Header.Set("Content-Type", ct)
		}
	}
	switch c.auth {
	case "user":
		req.Header.Set("Authorization", "Bearer "+ids.client.Token)
	case "bogus":
		if c.op.Federation {
			req.Header.Set("Authorization", `X-Matrix origin="`+string(env.fake.name)+`",destination="`+env.srv.Name+`",key="ed25519:fake3",sig="bm90YXNpZ25hdHVyZQ"`)
		} else {
			req.Header.Set("Authorization", "Bearer syt_bogus_token_sweep")
		}
	case "header-basic":
		req.Header.Set("Authorization", "Basic c3dlZXA6c3dlZXA=")
	case "header-empty-bearer":
		req.Header.Set("Authorization", "Bearer ")
	case "header-nonascii":
		req.Header["Authorization"] = []string{"Bearer \xff\xfetoken"}
	case "xmatrix-garbage":
		req.Header.Set("Authorization", `X-Matrix ,,,="=,origin`)
	case "xmatrix-no-sig":
		req.Header.Set("Authorization", `X-Matrix origin="`+string(env.fake.name)+`",key="ed25519:fake3"`)
	case "xmatrix-unknown-key":
		req.Header.Set("Authorization", strings.Replace(env.xMatrix(method, path, content, env.srv.Name), `key="ed25519:fake3"`, `key="ed25519:nope"`, 1))
	case "xmatrix-remote-origin":
		// Its keys would have to be fetched from a server that cannot exist.
		req.Header.Set("Authorization", `X-Matrix origin="`+bogusServer+`",destination="`+env.srv.Name+`",key="ed25519:x",sig="bm90YXNpZ25hdHVyZQ"`)
	case "xmatrix-self-origin":
		req.Header.Set("Authorization", `X-Matrix origin="`+env.srv.Name+`",destination="`+env.srv.Name+`",key="ed25519:x",sig="bm90YXNpZ25hdHVyZQ"`)
	case "query-bogus":
		q := req.URL.Query()
		q.Set("access_token", "syt_bogus_token_sweep")
		req.URL.RawQuery = q.Encode()
	case "signed":
		req.Header.Set("Authorization", env.xMatrix(method, path, content, env.srv.Name))
	case "signed-elsewhere":
		req.Header.Set("Authorization", env.xMatrix(method, path, content, bogusServer))
	}
	return req, nil
}

// xMatrix signs a federation request as the fake homeserver. Content that cannot be signed
// (not JSON, or not representable as canonical JSON) gets a signature over no content, which
// the server must refuse.
func (env *sweepEnv) xMatrix(method, uri string, content []byte, dest string) string {
	sign := func(content []byte) (string, error) {
		m := map[string]any{"method": method, "uri": uri, "origin": string(env.fake.name), "destination": dest}
		if content != nil {
			m["content"] = json.RawMessage(content)
		}
		data, err := json.Marshal(m)
		if err != nil {
			return "", err
		}
		signed, err := gomatrixserverlib.SignJSON(string(env.fake.name), env.fake.keyID, env.fake.priv, data)
		if err != nil {
			return "", err
		}
		var out struct {
			Signatures map[string]map[string]string `json:"signatures"`
		}
		if err := json.Unmarshal(signed, &out); err != nil {
			return "", err
		}
		sig := out.Signatures[string(env.fake.name)][string(env.fake.keyID)]
		if sig == "" {
			return "", errors.New("no signature")
		}
		return fmt.Sprintf(`X-Matrix origin="%s",destination="%s",key="%s",sig="%s"`, env.fake.name, dest, env.fake.keyID, sig), nil
	}
	h, err := sign(content)
	if err != nil {
		h, _ = sign(nil)
	}
	return h
}
