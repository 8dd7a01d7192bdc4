// Package httputil is the Matrix JSON plumbing shared by the client and federation APIs:
// the handler adapter, JSON decoding with the spec's error codes, error writing (the only
// place that maps an errcode to an HTTP status and logs internal errors), CORS and body limits.
// It must not import roomserver, syncapi, clientapi or federationapi.
package httputil

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gorilla/mux"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// Error is a Matrix error with an explicit status and extra top-level fields (for example the
// flows of user-interactive authentication or retry_after_ms).
type Error struct {
	Status int
	Code   string
	Msg    string
	Extra  map[string]any
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

// MarshalJSON writes errcode, error and the extra fields at the top level.
func (e *Error) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(e.Extra)+2)
	for k, v := range e.Extra {
		m[k] = v
	}
	if e.Code != "" {
		m["errcode"] = e.Code
		m["error"] = e.Msg
	}
	return json.Marshal(m)
}

// Errorf returns an *Error with the given status and errcode.
func Errorf(status int, code string, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// TooLarge is the error for bodies over the configured limit.
func TooLarge() *Error {
	return Errorf(http.StatusRequestEntityTooLarge, "M_TOO_LARGE", "request body too large")
}

// Response lets a handler choose a status other than 200.
type Response struct {
	Status int
	Body   any
}

// HandlerFunc is a handler that returns a value to encode as JSON, or an error.
type HandlerFunc func(r *http.Request) (any, error)

// Handle adapts fn to http.Handler. A result that is itself an http.Handler writes the
// response (for bodies that are not JSON, such as the multipart media of federation).
func Handle(log *slog.Logger, fn HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := fn(r)
		if err != nil {
			WriteError(w, r, log, err)
			return
		}
		if h, ok := res.(http.Handler); ok {
			h.ServeHTTP(w, r)
			return
		}
		if resp, ok := res.(Response); ok {
			WriteJSON(w, resp.Status, resp.Body)
			return
		}
		WriteJSON(w, http.StatusOK, res)
	})
}

// WriteJSON writes v with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	// An Encoder writes the encoding straight from its buffer, where json.Marshal returns a
	// copy of it: the copy of a large /sync response was megabytes more at the heap's peak.
	jw := &jsonWriter{w: w, status: status}
	if err := json.NewEncoder(jw).Encode(v); err != nil && !jw.wrote {
		jw.status = http.StatusInternalServerError
		_, _ = jw.Write([]byte(`{"errcode":"M_UNKNOWN","error":"internal error"}` + "\n"))
	}
}

// jsonWriter writes the one Write of a json.Encoder as a response, without the newline the
// Encoder ends it with.
type jsonWriter struct {
	w      http.ResponseWriter
	status int
	wrote  bool
}

func (j *jsonWriter) Write(b []byte) (int, error) {
	j.wrote = true
	j.w.Header().Set("Content-Type", "application/json")
	j.w.WriteHeader(j.status)
	_, err := j.w.Write(b[:len(b)-1])
	return len(b), err
}

// ErrInviteBlocked is the errcode for an invite to a user who blocks invites (v1.18,
// m.invite_permission_config); it is sent with 403.
const ErrInviteBlocked spec.MatrixErrorCode = "M_INVITE_BLOCKED"

// statusFor maps a Matrix errcode to the HTTP status the spec gives it.
func statusFor(code spec.MatrixErrorCode) int {
	switch code {
	case spec.ErrorForbidden, spec.ErrorGuestAccessForbidden, "M_USER_DEACTIVATED", spec.ErrorThreePIDAuthFailed, ErrInviteBlocked,
		"M_CANNOT_LEAVE_SERVER_NOTICE_ROOM":
		return http.StatusForbidden
	case spec.ErrorNotFound:
		return http.StatusNotFound
	case spec.ErrorMissingToken, spec.ErrorUnknownToken:
		return http.StatusUnauthorized
	case spec.ErrorLimitExceeded:
		return http.StatusTooManyRequests
	case "M_TOO_LARGE":
		return http.StatusRequestEntityTooLarge
	case spec.ErrorUnknown:
		return http.StatusInternalServerError
	case spec.ErrorUnrecognized:
		return http.StatusNotFound
	default:
		return http.StatusBadRequest
	}
}

// StatusClientClosedRequest is the status recorded for a request whose client went away before
// its answer was ready (nginx's 499); no client sees it.
const StatusClientClosedRequest = 499

// WriteError writes err as a Matrix error. Errors that are not Matrix errors are internal:
// they are logged here, once, and the client sees only M_UNKNOWN.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var he *Error
	var me spec.MatrixError
	var le spec.LimitExceededError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		WriteJSON(w, he.Status, he)
	case errors.As(err, &le):
		// The spec (v1.10, MSC4041) prefers the Retry-After header, in whole seconds rounded
		// up; retry_after_ms stays for older clients.
		w.Header().Set("Retry-After", strconv.FormatInt(max((le.RetryAfterMS+999)/1000, 1), 10))
		WriteJSON(w, http.StatusTooManyRequests, map[string]any{"errcode": le.ErrCode, "error": le.Err, "retry_after_ms": le.RetryAfterMS})
	case errors.As(err, &me):
		WriteJSON(w, statusFor(me.ErrCode), me)
	case errors.As(err, &mbe):
		WriteJSON(w, http.StatusRequestEntityTooLarge, TooLarge())
	case r.Context().Err() != nil && errors.Is(err, r.Context().Err()):
		// The client hung up (a long-poll given up, a closed tab): nobody reads this answer
		// and nothing went wrong here. Status 499 ("client closed request", as nginx logs it)
		// keeps it out of the server-error counts.
		log.Debug("client gone", "method", r.Method, "path", r.URL.Path, "err", err)
		w.WriteHeader(StatusClientClosedRequest)
	case storage.InvalidText(err):
		// Text PostgreSQL cannot hold (NUL, invalid UTF-8) that got past the request checks.
		WriteJSON(w, http.StatusBadRequest, spec.InvalidParam("text with NUL characters or invalid UTF-8 cannot be stored"))
	default:
		log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		WriteJSON(w, http.StatusInternalServerError, spec.Unknown("internal server error"))
	}
}

// DecodeJSON reads the request body into v, which must be a pointer to a struct or map.
// Invalid JSON is M_NOT_JSON; valid JSON that is not an object, or has fields of the wrong
// type, is M_BAD_JSON; a body over the limit is M_TOO_LARGE.
func DecodeJSON(r *http.Request, v any) error {
	body, err := ReadBody(r)
	if err != nil {
		return err
	}
	return UnmarshalObject(body, v)
}

// ReadBody reads the whole request body, mapping an over-limit body to M_TOO_LARGE.
func ReadBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, TooLarge()
	} else if err != nil {
		return nil, spec.BadJSON("could not read request body")
	}
	return body, nil
}

// MaxJSONDepth is how deeply arrays and objects may nest in a request body. Matrix bodies
// nest a few levels (an event's content, a push rule, a key with its signatures); the bound
// keeps recursive code (canonical JSON, redaction, the decoder's own limit of 10,000) from
// ever seeing a pathological document.
const MaxJSONDepth = 100

// CheckJSONText reports, with the spec's error codes, a body that is not JSON text a client
// may send: invalid JSON or bytes that are not UTF-8 (RFC 8259 §8.1, which the spec's JSON
// bodies follow: "JSON text ... MUST be encoded using UTF-8") are M_NOT_JSON, nesting deeper
// than MaxJSONDepth is M_BAD_JSON. Invalid UTF-8 must be refused before anything is stored:
// events are kept as the bytes received, and one invalid byte would make every member's
// /sync invalid JSON.
func CheckJSONText(body []byte) error {
	if !utf8.Valid(body) {
		return spec.NotJSON("request body is not valid UTF-8")
	}
	if !json.Valid(body) {
		return spec.NotJSON("request body is not valid JSON")
	}
	if jsonDepth(body) > MaxJSONDepth {
		return spec.BadJSON(fmt.Sprintf("request body nests deeper than %d levels", MaxJSONDepth))
	}
	return nil
}

// jsonDepth returns the deepest nesting of arrays and objects in valid JSON text.
func jsonDepth(body []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case inString:
			if c == '\\' {
				i++
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// UnmarshalObject decodes a JSON object into v with the spec's error codes.
func UnmarshalObject(body []byte, v any) error {
	trimmed := strings.TrimSpace(string(body))
	if trimmed == "" {
		return spec.NotJSON("request body is empty")
	}
	if err := CheckJSONText([]byte(trimmed)); err != nil {
		return err
	}
	if trimmed[0] != '{' {
		return spec.BadJSON("request body must be a JSON object")
	}
	if err := json.Unmarshal([]byte(trimmed), v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return spec.BadJSON(fmt.Sprintf("field %q has the wrong type", te.Field))
		}
		return spec.BadJSON(err.Error())
	}
	return nil
}

// PathVar returns the URL-decoded path variable name.
func PathVar(r *http.Request, name string) string {
	raw := mux.Vars(r)[name]
	if s, err := url.PathUnescape(raw); err == nil {
		return s
	}
	return raw
}

// PathRoomID parses the path variable name as a room ID.
func PathRoomID(r *http.Request, name string) (string, error) {
	id := PathVar(r, name)
	if !strings.HasPrefix(id, "!") {
		return "", spec.InvalidParam("invalid room ID")
	}
	return id, nil
}

// Limits wraps h so that request bodies over maxBytes are refused with M_TOO_LARGE.
func Limits(maxBytes int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBytes {
			WriteJSON(w, http.StatusRequestEntityTooLarge, TooLarge())
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBytes)
		h.ServeHTTP(w, r)
	})
}

// CheckURL refuses a request whose path or query, once unescaped, is not UTF-8 or holds a NUL:
// no Matrix identifier, token or name can, and such bytes must not reach handlers, logs or
// the database (PostgreSQL refuses them). 400 M_INVALID_PARAM.
func CheckURL(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !cleanText(r.URL.Path) {
			WriteJSON(w, http.StatusBadRequest, spec.InvalidParam("the path is not UTF-8 or holds a NUL character"))
			return
		}
		for _, pair := range strings.Split(r.URL.RawQuery, "&") {
			for _, part := range strings.SplitN(pair, "=", 2) {
				if v, err := url.QueryUnescape(part); err == nil && !cleanText(v) {
					WriteJSON(w, http.StatusBadRequest, spec.InvalidParam("a query parameter is not UTF-8 or holds a NUL character"))
					return
				}
			}
		}
		h.ServeHTTP(w, r)
	})
}

func cleanText(s string) bool { return utf8.ValidString(s) && !strings.Contains(s, "\x00") }

// CORS adds the headers web clients need and answers preflight requests.
func CORS(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr.Set("Access-Control-Allow-Origin", "*")
		hdr.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
		hdr.Set("Access-Control-Allow-Headers", "X-Requested-With, Content-Type, Authorization")
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusOK)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// NotFoundHandler answers unknown endpoints with M_UNRECOGNIZED as the spec requires.
func NotFoundHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusNotFound, spec.Unrecognized("unrecognized request"))
	})
}

// MethodNotAllowedHandler answers a known path with an unsupported method.
func MethodNotAllowedHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusMethodNotAllowed, spec.Unrecognized("method not allowed"))
	})
}

// Recover turns a panic in a handler into a logged 500 rather than a dropped connection.
func Recover(log *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("panic in handler", "method", r.Method, "path", r.URL.Path, "err", fmt.Sprint(v))
				WriteJSON(w, http.StatusInternalServerError, spec.Unknown("internal server error"))
			}
		}()
		h.ServeHTTP(w, r)
	})
}

// TimestampQuery reads the ts and dir query parameters of timestamp_to_event, on the client
// and federation APIs alike: ts in milliseconds, dir "f" (forwards) or "b".
func TimestampQuery(r *http.Request) (ts int64, forwards bool, err error) {
	q := r.URL.Query()
	ts, err = strconv.ParseInt(q.Get("ts"), 10, 64)
	if err != nil {
		return 0, false, spec.InvalidParam("ts must be a timestamp in milliseconds")
	}
	switch q.Get("dir") {
	case "f":
		return ts, true, nil
	case "b":
		return ts, false, nil
	}
	return 0, false, spec.InvalidParam("dir must be f or b")
}
