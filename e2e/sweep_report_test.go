package e2e

// The rules of the bad-input sweep (sweep_test.go) and its report.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkResponse applies the sweep's three rules to one response.
func checkResponse(c *sweepCase, resp *http.Response, raw []byte) []sweepFailure {
	status := resp.StatusCode
	fail := func(class, detail string) []sweepFailure {
		return []sweepFailure{{class: class, c: c, status: status, detail: detail}}
	}
	snippet := string(raw)
	if len(snippet) > 300 {
		snippet = snippet[:300] + "..."
	}
	documented, isDocumented := c.op.Responses[strconv.Itoa(status)]
	if status >= 500 && !gatewayError(c, status) {
		return fail("5xx", snippet)
	}
	if isDocumented && len(documented.ContentTypes) > 0 && !slices.Contains(documented.ContentTypes, "application/json") {
		return nil // media, for example
	}
	if status >= 300 && status < 400 && (!isDocumented || len(documented.ContentTypes) == 0) {
		return nil // a redirect
	}
	if !utf8.Valid(raw) {
		// Only input the server accepted without checking it can put such bytes there.
		return fail("not-json", "body is not UTF-8 (echoing nonutf8 input): "+strconv.Quote(snippet))
	}
	if !json.Valid(raw) {
		return fail("not-json", "body is not JSON: "+strconv.Quote(snippet))
	}
	// User-interactive authentication's 401 has no errcode on the first request; the spec's
	// other error schemas without one are examples that carry one.
	uia := status == http.StatusUnauthorized && isDocumented && len(documented.ContentTypes) > 0 && !documented.Errcode
	if status >= 400 && !uia {
		var e struct {
			Errcode any `json:"errcode"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			return fail("no-errcode", snippet)
		}
		if s, ok := e.Errcode.(string); !ok || !strings.HasPrefix(s, "M_") && !strings.Contains(s, ".") && !strings.Contains(s, "_") {
			return fail("no-errcode", snippet)
		}
	}
	return nil
}

// gatewayError reports whether a 5xx status is allowed for c: only 502 and 504, the answers
// for a remote server that cannot be reached (the spec documents them for remote media, and
// they are what clients expect elsewhere), and only when c names a made-up remote server. The
// body is then checked like any other error's.
func gatewayError(c *sweepCase, status int) bool {
	if status != http.StatusBadGateway && status != http.StatusGatewayTimeout {
		return false
	}
	return strings.Contains(c.path, bogusServer) || bytes.Contains(c.body, []byte(bogusServer))
}

// jsonDecodingKinds are the mutations whose failures come from generic JSON decoding
// (internal/httputil): floats and out-of-range integers where canonical JSON needs integers,
// strings that are not UTF-8, and nesting deeper than canonical JSON allows.
func jsonDecodingKind(kind string) bool {
	for _, k := range []string{":float", ":bigint", "nonutf8", ":deep"} {
		if strings.Contains(kind, k) {
			return true
		}
	}
	return false
}

// reportSweep prints the failures grouped by rule, operation and mutation, and fails the test
// if there are any.
func reportSweep(t *testing.T, failures []sweepFailure, seed uint64) {
	if len(failures) == 0 {
		return
	}
	type group struct {
		key     string
		known   bool
		count   int
		example sweepFailure
	}
	groups := map[string]*group{}
	for _, f := range failures {
		kind := f.c.kind
		if i := strings.Index(kind, "="); i >= 0 {
			kind = kind[:i]
		}
		key := fmt.Sprintf("%-10s %s %s [%s]", f.class, f.c.op.Method, f.c.op.Path, kind)
		g := groups[key]
		if g == nil {
			g = &group{key: key, known: jsonDecodingKind(f.c.kind) || strings.Contains(f.detail, "nonutf8"), example: f}
			groups[key] = g
		}
		g.count++
	}
	keys := sortedKeys(groups)
	var known, other []string
	for _, k := range keys {
		g := groups[k]
		ex := g.example
		body := string(ex.c.body)
		if len(body) > 120 {
			body = body[:120] + "..."
		}
		line := fmt.Sprintf("%s x%d\n      e.g. %s %s auth=%s body=%q -> %d %s", g.key, g.count, ex.c.op.Method, truncate(ex.c.path, 160), ex.c.auth, body, ex.status, ex.detail)
		if g.known {
			known = append(known, line)
		} else {
			other = append(other, line)
		}
	}
	if len(known) > 0 {
		t.Errorf("sweep: %d failure groups in the generic JSON-decoding classes (floats, big integers, non-UTF-8, deep nesting):\n  %s",
			len(known), strings.Join(known, "\n  "))
	}
	if len(other) > 0 {
		t.Errorf("sweep: %d other failure groups:\n  %s", len(other), strings.Join(other, "\n  "))
	}
	t.Logf("sweep: %d failing requests; rerun with LATTICE_SWEEP_SEED=%d", len(failures), seed)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
