// Package e2e drives the real lattice binary over HTTP on loopback, as a Matrix client would.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// binary is the lattice binary built once for the whole suite.
var binary string

// httpClient bounds every request, so that a stuck server fails a test instead of hanging it.
var httpClient = &http.Client{Timeout: 90 * time.Second}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lattice-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "lattice")
	build := exec.Command("go", "build", "-o", binary, "../cmd/lattice")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build lattice:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Server is one running lattice process with its own data directory.
type Server struct {
	t          testing.TB
	Name       string // server_name
	DataDir    string
	ConfigPath string
	URL        string // client API base URL
	cmd        *exec.Cmd
	logPath    string
	// Env is added to the environment of the process at each Start (test-only knobs).
	Env []string
	// members, when set, are the processes of a cluster behind a load balancer (lb) whose
	// address is URL (cluster_test.go); Start, Stop and Kill act on all of them.
	members []*Server
	lb      *loadBalancer
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ServerOption adjusts the generate-config arguments.
type ServerOption func(args []string) []string

// WithDatabase selects a database URL (default: embedded SQLite in the data dir).
func WithDatabase(url string) ServerOption {
	return func(args []string) []string { return append(args, "--database", url) }
}

// WithServerName sets the server_name (default localhost).
func WithServerName(name string) ServerOption {
	return func(args []string) []string {
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "--server-name" {
				args[i+1] = name
			}
		}
		return args
	}
}

// WithFederation turns the federation listener on at addr (host:port).
func WithFederation(addr string) ServerOption {
	return func(args []string) []string { return append(args, "--federation-addr", addr) }
}

// loopbackAllowed is the federation.allowed_ip_ranges of federating test servers.
// The indentation tells it from push.gateway_allowed_ip_ranges.
const loopbackAllowed = `  allowed_ip_ranges: ["127.0.0.0/8", "::1/128"]`

// gatewayLoopbackAllowed is the push.gateway_allowed_ip_ranges of every test server.
const gatewayLoopbackAllowed = `gateway_allowed_ip_ranges: ["127.0.0.0/8", "::1/128"]`

// StartServer generates a config in a temporary data dir and starts lattice with open registration.
func StartServer(t testing.TB, opts ...ServerOption) *Server {
	t.Helper()
	s := NewServer(t, opts...)
	t.Cleanup(s.Stop) // before Start: a start that fails half way stops what it started
	s.Start()
	return s
}

// NewServer generates a config as StartServer does, without starting the process. With
// LATTICE_E2E_CLUSTER set, the server is a cluster behind a load balancer (cluster_test.go).
func NewServer(t testing.TB, opts ...ServerOption) *Server {
	t.Helper()
	if os.Getenv("LATTICE_E2E_CLUSTER") != "" {
		// Every test server is three processes on one PostgreSQL database behind HAProxy.
		return newBalancedCluster(t, 3, opts...)
	}
	return newServer(t, opts...)
}

// newServer is NewServer for one process.
func newServer(t testing.TB, opts ...ServerOption) *Server {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	s := &Server{
		t:          t,
		Name:       "localhost",
		DataDir:    dir,
		ConfigPath: filepath.Join(dir, "lattice.yaml"),
		URL:        fmt.Sprintf("http://127.0.0.1:%d", port),
		logPath:    filepath.Join(dir, "lattice.log"),
	}
	args := []string{"generate-config", "--server-name", s.Name, "--data-dir", dir,
		"--client-addr", fmt.Sprintf("127.0.0.1:%d", port), "--registration", "open"}
	if os.Getenv("LATTICE_E2E_BACKEND") == "postgres" {
		args = append(args, "--database", storagetest.NewPostgresDatabase(t))
	}
	for _, o := range opts {
		args = o(args)
	}
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--server-name" {
			s.Name = args[i+1]
		}
	}
	out, err := exec.Command(binary, args...).Output()
	if err != nil {
		t.Fatalf("generate-config: %v", err)
	}
	if slices.Contains(args, "--federation-addr") {
		// Every test server and fake homeserver listens on loopback, which outbound
		// federation refuses by default; blockLoopback undoes this.
		out = bytes.Replace(out, []byte("  allowed_ip_ranges: []"), []byte(loopbackAllowed), 1)
	}
	// The fake push gateways of the tests listen on loopback too.
	out = bytes.Replace(out, []byte("gateway_allowed_ip_ranges: []"), []byte(gatewayLoopbackAllowed), 1)
	if err := os.WriteFile(s.ConfigPath, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// Start starts the process and waits until /versions answers.
func (s *Server) Start() {
	s.t.Helper()
	if s.members != nil {
		s.writeMemberConfigs()
		for _, m := range s.members {
			m.Start()
		}
		s.cmd = s.members[0].cmd // for the tests that signal the process (SIGHUP: the first only)
		s.lb.start(s.t)
		return
	}
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	s.cmd = exec.Command(binary, "serve", "--config", s.ConfigPath)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if len(s.Env) > 0 {
		s.cmd.Env = append(os.Environ(), s.Env...)
	}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func(cmd *exec.Cmd, f *os.File) { _ = cmd.Wait(); f.Close() }(s.cmd, logFile)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.URL + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("server did not start; log:\n%s", s.Log())
}

// Kill stops the process with SIGKILL, as a crash would.
func (s *Server) Kill() {
	for _, m := range s.members {
		m.Kill()
	}
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		for i := 0; i < 200 && s.cmd.ProcessState == nil; i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	s.cmd = nil
}

// Stop stops the process gracefully; the test's cleanup calls it.
func (s *Server) Stop() {
	for _, m := range s.members {
		m.Stop()
	}
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func(cmd *exec.Cmd) {
			for cmd.ProcessState == nil {
				time.Sleep(10 * time.Millisecond)
			}
			close(done)
		}(s.cmd)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
		}
	}
	s.cmd = nil
	if s.t.Failed() {
		s.t.Logf("server log:\n%s", s.Log())
	}
}

// Log returns what the server printed.
func (s *Server) Log() string {
	if s.members != nil {
		var b strings.Builder
		for i, m := range s.members {
			fmt.Fprintf(&b, "--- process %d ---\n%s\n", i+1, m.Log())
		}
		return b.String()
	}
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 20000 {
		b = b[len(b)-20000:]
	}
	return string(b)
}

// Client is a logged-in Matrix client.
type Client struct {
	t        testing.TB
	srv      *Server
	UserID   string
	DeviceID string
	Token    string
	txn      atomic.Int64
}

// Resp is a decoded JSON response.
type Resp struct {
	Status int
	Body   map[string]any
	Raw    []byte
}

// ErrCode returns the response's errcode.
func (r Resp) ErrCode() string { s, _ := r.Body["errcode"].(string); return s }

// Do sends a request; body may be nil, a []byte (sent as is) or a value encoded as JSON.
func (s *Server) Do(t testing.TB, token, method, path string, body any) Resp {
	t.Helper()
	var rdr io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rdr = bytes.NewReader(b)
	case string:
		rdr = strings.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rdr = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, s.URL+path, rdr)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rdr != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := Resp{Status: resp.StatusCode, Raw: raw}
	_ = json.Unmarshal(raw, &r.Body)
	return r
}

// Register creates an account with the dummy auth flow and returns its client.
func (s *Server) Register(t testing.TB, localpart string) *Client {
	t.Helper()
	body := map[string]any{"username": localpart, "password": "correct horse battery", "auth": map[string]any{"type": "m.login.dummy"}}
	r := s.Do(t, "", "POST", "/_matrix/client/v3/register", body)
	if r.Status != 200 {
		t.Fatalf("register %s: %d %s", localpart, r.Status, r.Raw)
	}
	return &Client{t: t, srv: s, UserID: r.Body["user_id"].(string), DeviceID: r.Body["device_id"].(string), Token: r.Body["access_token"].(string)}
}

// Login logs in an existing account as a new device.
func (s *Server) Login(t testing.TB, localpart string) *Client {
	t.Helper()
	body := map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": localpart}, "password": "correct horse battery"}
	r := s.Do(t, "", "POST", "/_matrix/client/v3/login", body)
	if r.Status != 200 {
		t.Fatalf("login %s: %d %s", localpart, r.Status, r.Raw)
	}
	return &Client{t: t, srv: s, UserID: r.Body["user_id"].(string), DeviceID: r.Body["device_id"].(string), Token: r.Body["access_token"].(string)}
}

// Do sends an authenticated request.
func (c *Client) Do(method, path string, body any) Resp {
	c.t.Helper()
	return c.srv.Do(c.t, c.Token, method, path, body)
}

// MustDo sends an authenticated request and fails the test unless it returns 200.
func (c *Client) MustDo(method, path string, body any) Resp {
	c.t.Helper()
	r := c.Do(method, path, body)
	if r.Status != 200 {
		c.t.Fatalf("%s %s: %d %s", method, path, r.Status, r.Raw)
	}
	return r
}

// CreateRoom creates a room and returns its ID.
func (c *Client) CreateRoom(body map[string]any) string {
	c.t.Helper()
	r := c.MustDo("POST", "/_matrix/client/v3/createRoom", body)
	return r.Body["room_id"].(string)
}

// Send sends an m.room.message text event and returns its event ID.
func (c *Client) Send(roomID, text string) string {
	c.t.Helper()
	path := fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/txn%d", url.PathEscape(roomID), c.txn.Add(1))
	r := c.MustDo("PUT", path, map[string]any{"msgtype": "m.text", "body": text})
	return r.Body["event_id"].(string)
}

// Sync calls /sync with the given since token (empty for an initial sync) and filter.
func (c *Client) Sync(since, filter string, timeoutMS int) Resp {
	c.t.Helper()
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	if filter != "" {
		q.Set("filter", filter)
	}
	q.Set("timeout", fmt.Sprint(timeoutMS))
	return c.MustDo("GET", "/_matrix/client/v3/sync?"+q.Encode(), nil)
}

// esc escapes a path segment.
func esc(s string) string { return url.PathEscape(s) }

// PeakRSSKiB returns the server process's peak resident set size (VmHWM) in KiB.
func (s *Server) PeakRSSKiB() int64 {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kib int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kib)
			return kib
		}
	}
	return 0
}
