package httputil

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

func TestDecodeJSONErrors(t *testing.T) {
	type body struct {
		Name string `json:"name"`
	}
	cases := []struct {
		in   string
		code string
	}{
		{``, "M_NOT_JSON"},
		{`{`, "M_NOT_JSON"},
		{`[1]`, "M_BAD_JSON"},
		{`"x"`, "M_BAD_JSON"},
		{`{"name": 5}`, "M_BAD_JSON"},
		{`{"name": "ok"}`, ""},
	}
	for _, c := range cases {
		r := httptest.NewRequest("POST", "/", strings.NewReader(c.in))
		var b body
		err := DecodeJSON(r, &b)
		var me spec.MatrixError
		switch {
		case c.code == "" && err != nil:
			t.Errorf("%q: unexpected error %v", c.in, err)
		case c.code != "" && (!errors.As(err, &me) || string(me.ErrCode) != c.code):
			t.Errorf("%q: error %v, want %s", c.in, err, c.code)
		}
	}
}

func TestWriteErrorStatuses(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{spec.Forbidden("no"), 403, "M_FORBIDDEN"},
		{spec.NotFound("no"), 404, "M_NOT_FOUND"},
		{spec.UnknownToken("no"), 401, "M_UNKNOWN_TOKEN"},
		{spec.MissingToken("no"), 401, "M_MISSING_TOKEN"},
		{spec.BadJSON("no"), 400, "M_BAD_JSON"},
		{spec.MatrixError{ErrCode: ErrInviteBlocked, Err: "no"}, 403, "M_INVITE_BLOCKED"},
		{spec.LimitExceeded("slow down", 1500), 429, "M_LIMIT_EXCEEDED"},
		{TooLarge(), 413, "M_TOO_LARGE"},
		{&http.MaxBytesError{Limit: 1}, 413, "M_TOO_LARGE"},
		{errors.New("database exploded"), 500, "M_UNKNOWN"},
		{fmt.Errorf("rename device: %w", errors.New(`ERROR: invalid byte sequence for encoding "UTF8": 0x00 (SQLSTATE 22021)`)), 400, "M_INVALID_PARAM"},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		WriteError(rec, httptest.NewRequest("GET", "/", nil), log, c.err)
		var body map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != c.status || body["errcode"] != c.code {
			t.Errorf("%v: %d %v, want %d %s", c.err, rec.Code, body["errcode"], c.status, c.code)
		}
		if c.status == 500 && strings.Contains(rec.Body.String(), "exploded") {
			t.Error("internal error details leaked to the client")
		}
		if c.code == "M_LIMIT_EXCEEDED" && body["retry_after_ms"] != float64(1500) {
			t.Errorf("retry_after_ms = %v", body["retry_after_ms"])
		}
		if c.code == "M_LIMIT_EXCEEDED" && rec.Header().Get("Retry-After") != "2" {
			t.Errorf("Retry-After = %q, want 2 (1500 ms rounded up)", rec.Header().Get("Retry-After"))
		}
	}
}

func TestLimitsAndCORS(t *testing.T) {
	h := CORS(Limits(10, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := ReadBody(r); err != nil {
			WriteError(w, r, slog.New(slog.NewTextHandler(io.Discard, nil)), err)
			return
		}
		w.WriteHeader(204)
	})))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("x", 11))))
	if rec.Code != 413 {
		t.Errorf("oversized body: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("OPTIONS", "/", nil))
	if rec.Code != 200 || rec.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("preflight: %d %v", rec.Code, rec.Header())
	}
}

func TestCheckJSONText(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	cases := []struct {
		in   string
		code string
	}{
		{`{"body":"ok"}`, ""},
		{`{"body":"\ud83d\ude00 é"}`, ""},
		{"{\"body\":\"\xff\xfe\"}", "M_NOT_JSON"},
		{"{\"\xc3\x28\":1}", "M_NOT_JSON"},
		{"{\"s\":\"\xed\xa0\x80\"}", "M_NOT_JSON"}, // a UTF-16 surrogate encoded as UTF-8
		{`{"a":` + deep(MaxJSONDepth-1) + `}`, ""},
		{`{"a":` + deep(MaxJSONDepth) + `}`, "M_BAD_JSON"},
		{`{"a":"` + strings.Repeat("[", 500) + `"}`, ""}, // brackets inside a string do not nest
		{strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000), "M_BAD_JSON"},
	}
	for _, c := range cases {
		err := CheckJSONText([]byte(c.in))
		var me spec.MatrixError
		got := ""
		if errors.As(err, &me) {
			got = string(me.ErrCode)
		} else if err != nil {
			got = err.Error()
		}
		if got != c.code {
			t.Errorf("%.60q: got %q, want %q", c.in, got, c.code)
		}
	}
}

// TestCheckURL: a path or query that is not UTF-8 or holds a NUL once unescaped is 400
// M_INVALID_PARAM before any handler sees it (on PostgreSQL these were 500s).
func TestCheckURL(t *testing.T) {
	h := CheckURL(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	for target, want := range map[string]int{
		"/_matrix/client/v3/devices/ABC":                  204,
		"/_matrix/client/v3/devices/%E2%98%83":            204,
		"/_matrix/client/v3/devices/%FF":                  400,
		"/_matrix/client/v3/devices/%00":                  400,
		"/_matrix/media/v3/upload?filename=a%FF.txt":      400,
		"/_matrix/media/v3/upload?filename=a%00":          400,
		"/_matrix/media/v3/upload?%FF=1":                  400,
		"/_matrix/media/v3/upload?filename=%E2%98%83.txt": 204,
		"/_matrix/client/v3/sync?since=%ZZ&timeout=0":     204, // not an escape: left to the handler
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
		if rec.Code != want || want == 400 && !strings.Contains(rec.Body.String(), "M_INVALID_PARAM") {
			t.Errorf("%s: %d %s, want %d", target, rec.Code, rec.Body, want)
		}
	}
}

// TestWriteErrorClientGone: an error that is only the client hanging up (its request's
// context canceled) is no internal error: it is recorded as 499, not 500, and not logged as
// an error; the same error while the client still waits is a 500.
func TestWriteErrorClientGone(t *testing.T) {
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := httptest.NewRequest("GET", "/_matrix/client/v3/sync", nil).WithContext(ctx)
	w := httptest.NewRecorder()
	WriteError(w, r, log, fmt.Errorf("select events: %w", context.Canceled))
	if w.Code != StatusClientClosedRequest || logged.Len() != 0 {
		t.Errorf("client gone: status %d, log %q; want 499 and nothing logged", w.Code, logged.String())
	}
	w = httptest.NewRecorder()
	WriteError(w, httptest.NewRequest("GET", "/_matrix/client/v3/sync", nil), log, fmt.Errorf("select events: %w", context.Canceled))
	if w.Code != http.StatusInternalServerError || !strings.Contains(logged.String(), "internal error") {
		t.Errorf("client waiting: status %d, log %q; want 500 and the error logged", w.Code, logged.String())
	}
}
