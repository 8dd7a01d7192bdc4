package e2e

// The federation side of the bad-input sweep (sweep_test.go) that schemas cannot reach:
// events that are correctly signed by the fake homeserver, a member of the sweep's room, but
// carry content a server must survive. They arrive in transactions, which answer 200 whatever
// becomes of each event, so the server's log is checked too (see logFailures).

import (
	"encoding/json"
	"os"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// sweepPDUs sends the fake homeserver's odd events to the server, each in its own transaction.
func (env *sweepEnv) sweepPDUs() (int, []sweepFailure) {
	t, f, room := env.t, env.fake, env.fakeRoom
	sender := "@fake:" + string(f.name)
	sk := func(s string) *string { return &s }
	type pdu struct {
		kind     string
		evType   string
		stateKey *string
		content  any
	}
	pdus := []pdu{
		{"nul-body", "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "a\u0000b"}},
		{"big-body", "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": strings.Repeat("x", 60000)}},
		{"body-not-string", "m.room.message", nil, map[string]any{"msgtype": 5, "body": []any{map[string]any{}}}},
		{"nul-displayname", "m.room.member", sk(sender), map[string]any{"membership": "join", "displayname": "\u0000x", "avatar_url": "mxc://" + bogusServer + "/x"}},
		{"displayname-not-string", "m.room.member", sk(sender), map[string]any{"membership": "join", "displayname": 12, "avatar_url": []any{}}},
		{"nul-state-key", "org.sweep.state", sk("\u0000"), map[string]any{}},
		{"nul-name", "m.room.name", sk(""), map[string]any{"name": "\u0000"}},
		{"redact-unknown", "m.room.redaction", nil, map[string]any{"redacts": "$nope"}},
		{"receipt-like", "m.receipt", nil, map[string]any{"$x": map[string]any{}}},
		{"deep-content", "m.room.message", nil, deepContent(60)},
		{"power-levels-wrong-types", "m.room.power_levels", sk(""), map[string]any{"users": map[string]any{sender: "100"}, "ban": []any{}}},
	}
	var failures []sweepFailure
	op := &apiOp{Method: "PUT", Path: "/_matrix/federation/v1/send/{txnId} (signed events)", Federation: true, Responses: map[string]apiResponse{}}
	for _, p := range pdus {
		ev := f.build(t, room, sender, p.evType, p.stateKey, p.content, nil)
		r := f.sendPDUs(t, spec.ServerName(env.srv.Name), []json.RawMessage{ev.JSON()})
		c := &sweepCase{op: op, kind: "pdu:" + p.kind, path: "/_matrix/federation/v1/send/...", body: ev.JSON(), auth: "signed"}
		if r.Status >= 500 || !json.Valid(r.Raw) {
			failures = append(failures, sweepFailure{class: "5xx", c: c, status: r.Status, detail: truncate(string(r.Raw), 300)})
		}
	}
	// The content changed after signing (a hash mismatch: the event is redacted), an event
	// over the 64 KiB limit, and one event twice in a transaction.
	ev := f.build(t, room, sender, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "signed"}, nil)
	for kind, raws := range map[string][]json.RawMessage{
		"hash-mismatch": {withContent(t, ev, map[string]any{"body": "changed"})},
		"too-big":       {withContent(t, ev, map[string]any{"body": strings.Repeat("x", 70000)})},
		"duplicate":     {ev.JSON(), ev.JSON()},
	} {
		r := f.sendPDUs(t, spec.ServerName(env.srv.Name), raws)
		if r.Status >= 500 || !json.Valid(r.Raw) {
			failures = append(failures, sweepFailure{class: "5xx", c: &sweepCase{op: op, kind: "pdu:" + kind, auth: "signed"}, status: r.Status, detail: truncate(string(r.Raw), 300)})
		}
	}
	return len(pdus) + 3, failures
}

func deepContent(levels int) map[string]any {
	m := map[string]any{"msgtype": "m.text", "body": "deep"}
	cur := m
	for range levels {
		next := map[string]any{}
		cur["d"] = next
		cur = next
	}
	return m
}

// logFailures returns the errors the server logged that no response showed: our own
// failures (the log's Error level) in work behind a request, such as storing the events of a
// transaction. "internal error" and "panic in handler" lines came with a 500, already counted.
func (env *sweepEnv) logFailures() []sweepFailure {
	raw, err := os.ReadFile(env.srv.logPath)
	if err != nil {
		env.t.Fatal(err)
	}
	op := &apiOp{Method: "LOG", Path: "server log", Responses: map[string]apiResponse{}}
	var failures []sweepFailure
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.Contains(line, "level=ERROR") || strings.Contains(line, `msg="internal error"`) || strings.Contains(line, `msg="panic in handler"`) {
			continue
		}
		msg, kind := line, "?"
		if i := strings.Index(line, `msg="`); i >= 0 {
			msg = line[i:]
			kind, _, _ = strings.Cut(msg[len(`msg="`):], `"`)
		}
		failures = append(failures, sweepFailure{class: "log-error", c: &sweepCase{op: op, kind: strings.ReplaceAll(kind, "=", " ")}, detail: truncate(msg, 400)})
	}
	return failures
}
