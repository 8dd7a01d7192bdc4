package e2e

// The requests of the bad-input sweep (sweep_test.go): for each operation, a valid-ish request
// built from its schema, then the same request broken one way at a time.
//
// Real identifiers are placeholders ({{room}}, {{user}}...) filled in when the request is sent,
// because the throwaway user of destructive operations can change during the sweep. Every
// server name the sweep makes up ends in .invalid, so that the server never reaches outside
// loopback.

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"strings"
)

// placeholders maps each placeholder to the identifier it stands for.
func (ids *sweepIDs) placeholders() map[string]string {
	return map[string]string{"{{room}}": ids.room, "{{user}}": ids.user, "{{event}}": ids.event, "{{device}}": ids.device,
		"{{alias}}": ids.alias, "{{media}}": ids.mediaID, "{{filter}}": ids.filterID, "{{backup}}": ids.backup, "{{other}}": ids.other}
}

// fill replaces the placeholders of a path (escaped) and body (JSON strings: the identifiers
// need no JSON escaping).
func (ids *sweepIDs) fill(path string, body []byte) (string, []byte) {
	for ph, v := range ids.placeholders() {
		path = strings.ReplaceAll(path, ph, url.PathEscape(v))
		if body != nil && len(body) < 1<<16 {
			body = []byte(strings.ReplaceAll(string(body), ph, v))
		}
	}
	return path, body
}

const (
	bogusServer = "example.invalid"
	hugeLen     = 100 << 10
	deepLevels  = 10000
)

// pathValue is a valid-ish value for a path or query parameter, by name and schema.
func (env *sweepEnv) paramValue(p apiParam) string {
	n := strings.ToLower(p.Name)
	switch {
	case len(p.Schema.Enum) > 0:
		return fmt.Sprint(p.Schema.Enum[0])
	case n == "roomid" || n == "roomidoralias" || n == "room_id":
		return "{{room}}"
	case n == "roomalias" || n == "room_alias" || n == "alias":
		return "{{alias}}"
	case n == "eventid" || n == "event_id":
		return "{{event}}"
	case n == "userid" || n == "user_id":
		return "{{user}}"
	case n == "deviceid":
		return "{{device}}"
	case n == "mediaid":
		return "{{media}}"
	case n == "filterid" || n == "filter":
		return "{{filter}}"
	case n == "version":
		return "{{backup}}"
	case n == "servername":
		return env.srv.Name
	case n == "server" || n == "via":
		return bogusServer
	case n == "txnid":
		return "{{txn}}" // a new one for every request: a repeated one gets the first answer
	case n == "eventtype" || n == "type":
		return "org.sweep.type"
	case n == "statekey":
		return "sweep"
	case n == "kind":
		return "override"
	case n == "ruleid":
		return "org.sweep.rule"
	case n == "receipttype":
		return "m.read"
	case n == "reltype":
		return "m.reference"
	case n == "keyname" || n == "field":
		return "displayname"
	case n == "tag":
		return "u.sweep"
	case n == "querytype":
		return "profile"
	case n == "dir":
		return "b"
	case strings.Contains(n, "timeout"):
		return "0"
	case n == "url" || n == "redirecturl":
		return "https://" + bogusServer + "/sweep"
	case n == "limit" || n == "width" || n == "height" || n == "max_depth":
		return "8"
	case n == "ts":
		return "1700000000000"
	case n == "v":
		return "{{event}}"
	case n == "ver":
		return "12"
	}
	switch p.Schema.Type {
	case "integer", "number":
		return "1"
	case "boolean":
		return "false"
	}
	return "sweep"
}

// bodyValue is a valid-ish JSON value for schema s of the property called name.
func (env *sweepEnv) bodyValue(name string, s *apiSchema, depth int) any {
	n := strings.ToLower(name)
	if s == nil {
		s = &apiSchema{}
	}
	if len(s.Enum) > 0 {
		return s.Enum[0]
	}
	switch s.Type {
	case "integer", "number":
		switch {
		case strings.Contains(n, "timeout"):
			return 0
		case n == "limit":
			return 5
		}
		return 1
	case "boolean":
		return false
	case "array":
		if depth > 5 {
			return []any{}
		}
		return []any{env.bodyValue(strings.TrimSuffix(name, "s"), s.Items, depth+1)}
	case "object", "":
		if s.Type == "" && len(s.Props) == 0 && s.AddProps == nil {
			return env.stringValue(n, s.Format)
		}
		obj := map[string]any{}
		if depth > 5 {
			return obj
		}
		for _, p := range s.propNames() {
			obj[p] = env.bodyValue(p, s.Props[p], depth+1)
		}
		if len(s.Props) == 0 && s.AddProps != nil {
			obj["org.sweep.key"] = env.bodyValue("", s.AddProps, depth+1)
		}
		return obj
	}
	return env.stringValue(n, s.Format)
}

// stringValue is a valid-ish string for a property, by name and format.
func (env *sweepEnv) stringValue(n, format string) string {
	switch {
	case n == "invite" || n == "invitee":
		return "{{other}}"
	case format == "mx-user-id" || n == "user_id" || n == "sender" || n == "mxid" || n == "user" || n == "userid":
		return "{{user}}"
	case format == "mx-room-id" || n == "room_id":
		return "{{room}}"
	case format == "mx-event-id" || n == "event_id" || strings.HasSuffix(n, "_event") || n == "earliest_event" || n == "latest_event" || n == "m.fully_read" || n == "m.read":
		return "{{event}}"
	case format == "mx-server-name" || n == "server" || n == "server_name" || n == "id_server" || n == "via" || n == "origin":
		return bogusServer
	case format == "mx-mxc-uri" || n == "avatar_url":
		return "mxc://" + env.srv.Name + "/{{media}}"
	case format == "uri" || n == "url" || n == "next_link" || strings.HasSuffix(n, "_url"):
		return "https://" + bogusServer + "/sweep"
	case n == "device_id" || n == "device":
		return "{{device}}"
	case n == "room_alias" || n == "alias":
		return "{{alias}}"
	case n == "room_version" || n == "new_version":
		return "12"
	case n == "type" || n == "event_type":
		return "org.sweep.type"
	}
	return "sweep"
}

// cases lists the requests for op: baseline cases first, then mutations.
func (env *sweepEnv) cases(op *apiOp) []*sweepCase {
	vals := map[string]string{}
	for _, p := range op.Params {
		vals[p.In+":"+p.Name] = env.paramValue(p)
		if op.Federation && p.Name == "userId" && strings.Contains(op.Path, "/make_") {
			// make_join, make_leave and make_knock are for users of the asking server.
			vals[p.In+":"+p.Name] = "@fake:" + string(env.fake.name)
		}
	}
	var body []byte
	var bodyObj any
	jsonBody := op.Body != nil && strings.Contains(op.BodyType, "json")
	switch {
	case jsonBody:
		bodyObj = env.bodyValue("", op.Body, 0)
		body, _ = json.Marshal(bodyObj)
	case op.Body != nil:
		body = []byte("sweep bytes")
	}
	userAuth := "user"
	switch {
	case op.Federation && op.Auth == "signed":
		userAuth = "signed"
	case op.Federation:
		userAuth = "none"
	case op.Auth == "":
		userAuth = "none"
	}
	var out []*sweepCase
	add := func(kind string, vals map[string]string, allQuery bool, body []byte, auth string, baseline bool) {
		out = append(out, &sweepCase{op: op, kind: kind, path: buildPath(op, vals, allQuery), body: body, auth: auth, baseline: baseline})
	}
	add("valid", vals, false, body, userAuth, true)
	add("valid:all-query", vals, true, body, userAuth, true)
	if op.Auth != "" {
		add("auth:none", vals, true, body, "none", true)
		add("auth:bogus", vals, true, body, "bogus", true)
	}
	if !op.Federation {
		for _, a := range []string{"query-bogus", "header-basic", "header-empty-bearer", "header-nonascii"} {
			add("auth:"+a, vals, false, body, a, false)
		}
	} else if op.Auth == "signed" {
		for _, a := range []string{"xmatrix-garbage", "xmatrix-no-sig", "xmatrix-unknown-key", "xmatrix-remote-origin", "xmatrix-self-origin"} {
			add("auth:"+a, vals, false, body, a, false)
		}
	}
	if op.Federation && op.Auth == "" {
		add("auth:signed", vals, false, body, "signed", false)
	}
	if op.Federation && op.Auth == "signed" {
		add("auth:signed-for-another-server", vals, false, body, "signed-elsewhere", true)
	}

	// A method the path does not have: 405 M_UNRECOGNIZED.
	out = append(out, &sweepCase{op: op, kind: "method:PATCH", path: buildPath(op, vals, false), body: body, auth: userAuth, method: "PATCH"})
	if body != nil {
		out = append(out, &sweepCase{op: op, kind: "content-type:none", path: buildPath(op, vals, false), body: body, auth: userAuth, ctype: "-"})
		out = append(out, &sweepCase{op: op, kind: "content-type:text", path: buildPath(op, vals, false), body: body, auth: userAuth, ctype: "text/plain; charset=latin1"})
	}
	if path := buildPath(op, vals, true); strings.Contains(path, "?") {
		// Every query parameter twice, the second time with another value.
		rep := path
		for _, kv := range strings.Split(path[strings.Index(path, "?")+1:], "&") {
			rep += "&" + strings.SplitN(kv, "=", 2)[0] + "=2"
		}
		add("query:repeated", vals, true, body, userAuth, false)
		out[len(out)-1].path = rep
	}

	// Path and query parameters, one at a time.
	for _, p := range op.Params {
		key := p.In + ":" + p.Name
		for _, bad := range badParamValues(p) {
			mut := maps.Clone(vals)
			mut[key] = bad
			add(key+"="+truncate(bad, 24), mut, true, body, userAuth, false)
		}
	}
	if op.Body == nil {
		// A body where none is expected, and malformed JSON where it is ignored.
		add("body:unexpected", vals, false, []byte(`{"sweep": [1, 2.5, "x"]}`), userAuth, false)
		add("body:unexpected-malformed", vals, false, []byte(`{"sweep`), userAuth, false)
		return out
	}
	for _, m := range bodyMutations(op, bodyObj, jsonBody) {
		add("body:"+m.kind, vals, false, m.body, userAuth, false)
		if op.Federation && op.Auth == "signed" && len(out)%4 == 0 {
			// The same mutation with a signature the server cannot verify.
			add("body:"+m.kind+":bogus-sig", vals, false, m.body, "bogus", false)
		}
	}
	return out
}

// buildPath fills op's path template and adds the required query parameters (all of them when
// allQuery). Values are escaped unless they start with "raw:", for deliberately bad escapes.
func buildPath(op *apiOp, vals map[string]string, allQuery bool) string {
	path := op.Path
	var query []string
	for _, p := range op.Params {
		v := vals[p.In+":"+p.Name]
		raw, isRaw := strings.CutPrefix(v, "raw:")
		switch p.In {
		case "path":
			if !isRaw {
				raw = escapeKeepingPlaceholders(v)
			}
			path = strings.Replace(path, "{"+p.Name+"}", raw, 1)
		case "query":
			if !p.Required && !allQuery && !strings.Contains(strings.ToLower(p.Name), "timeout") {
				continue
			}
			if !isRaw {
				raw = url.QueryEscape(v)
				raw = strings.ReplaceAll(strings.ReplaceAll(raw, "%7B%7B", "{{"), "%7D%7D", "}}")
			}
			query = append(query, url.QueryEscape(p.Name)+"="+raw)
		}
	}
	if len(query) > 0 {
		path += "?" + strings.Join(query, "&")
	}
	return path
}

func escapeKeepingPlaceholders(v string) string {
	e := url.PathEscape(v)
	return strings.ReplaceAll(strings.ReplaceAll(e, "%7B%7B", "{{"), "%7D%7D", "}}")
}

// badParamValues are the broken values tried for a parameter.
func badParamValues(p apiParam) []string {
	n := strings.ToLower(p.Name)
	long := strings.Repeat("a", 10000)
	if n == "servername" || n == "server" || n == "via" {
		// Server names: only names that cannot resolve, so that nothing leaves loopback.
		return []string{bogusServer, "bad name." + bogusServer, "raw:%FF." + bogusServer, long[:200] + "." + bogusServer,
			bogusServer + ":99999", bogusServer + ":-1", "raw:%00." + bogusServer, "[not-an-ip]." + bogusServer}
	}
	vals := []string{"", "!nope:" + bogusServer, "$bogus", "@x:" + bogusServer, "raw:%20", "raw:%FF", "raw:%00", long,
		"raw:..", "raw:%2e%2e", "a/b", "☃", "!nope:localhost", "@:", "#:"}
	if p.In == "query" {
		vals = append(vals, "-1", "1.5", "1e2", "99999999999999999999", "true", "[]", `{"a":`, "")
		if strings.Contains(n, "timeout") {
			// Not a long wait: the sweep would time out, not the server misbehave.
			vals = []string{"-1", "1.5", "x", "", "raw:%FF", long}
		}
	}
	return vals
}

// bodyMutation is one broken request body.
type bodyMutation struct {
	kind string
	body []byte
}

// bodyMutations breaks the valid-ish body obj of op in every way the sweep knows.
func bodyMutations(op *apiOp, obj any, jsonBody bool) []bodyMutation {
	deepArr := strings.Repeat("[", deepLevels) + strings.Repeat("]", deepLevels)
	deepObj := strings.Repeat(`{"a":`, deepLevels) + "1" + strings.Repeat("}", deepLevels)
	muts := []bodyMutation{
		{"empty", []byte{}},
		{"malformed:truncated", []byte(`{"a":`)},
		{"malformed:garbage", []byte(`{not json`)},
		{"malformed:nul", []byte(`nul`)},
		{"malformed:trailing", []byte(`{} {}`)},
		{"malformed:bom", []byte("\xef\xbb\xbf{}")},
		{"nonutf8:raw", []byte("{\"a\":\"\xff\xfe\"}")},
		{"nonutf8:key", []byte("{\"\xff\":1}")},
		{"nonutf8:escaped-surrogate", []byte(`{"a":"\ud800"}`)},
		{"not-object:array", []byte(`[]`)},
		{"not-object:array-of-object", []byte(`[{}]`)},
		{"not-object:string", []byte(`"x"`)},
		{"not-object:number", []byte(`1`)},
		{"not-object:null", []byte(`null`)},
		{"top:deep-array", []byte(`{"sweep":` + deepArr + `}`)},
		{"top:deep-object", []byte(`{"sweep":` + deepObj + `}`)},
		{"top:deep-body", []byte(deepObj)},
		{"top:huge-unknown", []byte(`{"sweep":"` + strings.Repeat("x", hugeLen) + `"}`)},
		{"top:float-unknown", []byte(`{"sweep":1.5}`)},
		{"top:duplicate-keys", []byte(`{"a":1,"a":"x"}`)},
	}
	m, ok := obj.(map[string]any)
	if !jsonBody || !ok {
		return muts
	}
	req := map[string]any{}
	for _, r := range op.Body.Required {
		if v, ok := m[r]; ok {
			req[r] = v
		}
	}
	if len(req) > 0 {
		muts = append(muts, bodyMutation{"required-only", mustJSON(req)})
	}
	muts = append(muts, bodyMutation{"empty-object", []byte(`{}`)})
	for _, name := range op.Body.propNames() {
		s := op.Body.Props[name]
		for _, v := range badValues(s) {
			muts = append(muts, bodyMutation{v.kind + ":" + name, withProp(m, name, v.raw)})
			// The bad property with only the required ones, in case another made-up value
			// stops the request before this one is read.
			muts = append(muts, bodyMutation{"alone:" + v.kind + ":" + name, withProp(req, name, v.raw)})
		}
		// One level down, for objects with known properties.
		if sub, ok := m[name].(map[string]any); ok {
			for _, sname := range s.propNames() {
				for _, v := range badValues(s.Props[sname])[:2] {
					muts = append(muts, bodyMutation{v.kind + ":" + name + "." + sname, withProp(m, name, string(withProp(sub, sname, v.raw)))})
				}
			}
		}
	}
	return muts
}

type badValue struct{ kind, raw string }

// badValues are raw JSON values that break a property of schema s: wrong types first, then the
// numbers, strings and nesting that parsers get wrong.
func badValues(s *apiSchema) []badValue {
	vals := []badValue{{"wrong-type", `null`}}
	switch s.Type {
	case "string":
		vals = append(vals, badValue{"wrong-type", `12`}, badValue{"wrong-type", `{"a":"b"}`},
			badValue{"huge", `"` + strings.Repeat("x", hugeLen) + `"`}, badValue{"nonutf8", "\"\xff\xfe\""},
			badValue{"weird", `"\u0000"`}, badValue{"weird", `""`})
	case "integer", "number":
		vals = append(vals, badValue{"wrong-type", `"1"`}, badValue{"wrong-type", `true`},
			badValue{"float", `1.5`}, badValue{"float", `1e2`}, badValue{"float", `-0`}, badValue{"float", `1e400`},
			badValue{"bigint", `9007199254740992`}, badValue{"bigint", `-9007199254740992`}, badValue{"bigint", `123456789012345678901234567890`})
	case "boolean":
		vals = append(vals, badValue{"wrong-type", `"true"`}, badValue{"wrong-type", `1`})
	case "array":
		vals = append(vals, badValue{"wrong-type", `{"a":1}`}, badValue{"wrong-type", `"x"`}, badValue{"wrong-type", `[null, 1.5, {}]`},
			badValue{"deep", strings.Repeat("[", deepLevels) + strings.Repeat("]", deepLevels)},
			badValue{"huge", `[` + strings.TrimSuffix(strings.Repeat(`"x",`, 20000), ",") + `]`})
	default: // objects and anything
		vals = append(vals, badValue{"wrong-type", `[1]`}, badValue{"wrong-type", `"x"`}, badValue{"wrong-type", `7`},
			badValue{"float", `{"a":1.5}`}, badValue{"bigint", `{"a":9007199254740993}`}, badValue{"nonutf8", "{\"a\":\"\xff\"}"},
			badValue{"deep", strings.Repeat(`{"a":`, deepLevels) + "1" + strings.Repeat("}", deepLevels)})
	}
	for i := range vals {
		switch vals[i].kind {
		case "float", "bigint", "deep", "nonutf8":
			vals[i].kind = "json:" + vals[i].kind // see jsonDecodingKind
		}
	}
	return vals
}

// withProp returns m encoded as JSON with property name set to the raw JSON value raw.
func withProp(m map[string]any, name, raw string) []byte {
	var b strings.Builder
	b.WriteString("{")
	first := true
	for _, k := range sortedKeys(m) {
		if k == name {
			continue
		}
		if !first {
			b.WriteString(",")
		}
		first = false
		b.Write(mustJSON(k))
		b.WriteString(":")
		b.Write(mustJSON(m[k]))
	}
	if !first {
		b.WriteString(",")
	}
	b.Write(mustJSON(name))
	b.WriteString(":")
	b.WriteString(raw)
	b.WriteString("}")
	return []byte(b.String())
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
