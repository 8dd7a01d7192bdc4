package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// jssdkDir holds the node project (package.json, package-lock.json, chat.mjs).
const jssdkDir = "jssdk"

// jssdkVersion is the matrix-js-sdk version package.json pins.
const jssdkVersion = "37.5.0"

// TestMatrixJSSDK drives the real matrix-js-sdk (a client library real Matrix
// clients are built on) against the lattice binary: two users sync, chat in a
// room they created and joined through the SDK, and new devices read the whole
// history back with the SDK's own pagination. See jssdk/chat.mjs for the steps.
//
// It needs node and npm; without them it is skipped, unless CI is set, where it fails.
func TestMatrixJSSDK(t *testing.T) {
	runSDKScript(t, "chat.mjs", 150*time.Second)
}

// runSDKScript starts a server, registers alice and bob, and runs a node script of jssdk/
// against them (see runNodeScript).
func runSDKScript(t *testing.T, script string, limit time.Duration) {
	node := requireNodeModules(t)
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	runNodeScript(t, node, script, limit, alice, bob, "LATTICE_URL="+srv.URL)
}

// requireNodeModules returns the path of node, after making sure jssdk/node_modules holds the
// pinned matrix-js-sdk (see requireTool for when the test is skipped).
func requireNodeModules(t *testing.T) string {
	t.Helper()
	node, npm := requireTool(t, "node"), requireTool(t, "npm")
	ensureNodeModules(t, npm)
	return node
}

// runNodeScript runs a node script of jssdk/ with alice's and bob's credentials and password in
// its environment, besides env (at least LATTICE_URL), streaming its output; the test fails
// when the script fails or outlasts limit.
func runNodeScript(t *testing.T, node, script string, limit time.Duration, alice, bob *Client, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = jssdkDir
	cmd.Env = append(os.Environ(),
		"LATTICE_PASSWORD=correct horse battery", // the password Server.Register uses
		"ALICE_USER="+alice.UserID, "ALICE_TOKEN="+alice.Token, "ALICE_DEVICE="+alice.DeviceID,
		"BOB_USER="+bob.UserID, "BOB_TOKEN="+bob.Token, "BOB_DEVICE="+bob.DeviceID,
	)
	cmd.Env = append(cmd.Env, env...)
	cmd.WaitDelay = 5 * time.Second
	if err := runStreaming(t, cmd, script+": "); err != nil {
		if ctx.Err() != nil {
			t.Fatalf("node %s did not finish within %v: %v", script, limit, err)
		}
		t.Fatalf("node %s failed: %v (its output above says which step)", script, err)
	}
}

// requireTool returns the path of a tool, skipping the test without it (failing under CI).
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found in PATH (required under CI): %v", name, err)
		}
		t.Skipf("%s not found in PATH: %v", name, err)
	}
	return p
}

// ensureNodeModules runs `npm ci` unless node_modules already holds the pinned matrix-js-sdk.
func ensureNodeModules(t *testing.T, npm string) {
	t.Helper()
	if installedJSSDKVersion() == jssdkVersion {
		return
	}
	t.Logf("installing %s/node_modules with npm ci", jssdkDir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = jssdkDir
	cmd.WaitDelay = 5 * time.Second
	if err := runStreaming(t, cmd, "npm ci: "); err != nil {
		t.Fatalf("npm ci in e2e/%s: %v", jssdkDir, err)
	}
	if v := installedJSSDKVersion(); v != jssdkVersion {
		t.Fatalf("after npm ci, matrix-js-sdk version is %q, want %q", v, jssdkVersion)
	}
}

func installedJSSDKVersion() string {
	b, err := os.ReadFile(filepath.Join(jssdkDir, "node_modules", "matrix-js-sdk", "package.json"))
	if err != nil {
		return ""
	}
	var pkg struct {
		Version string `json:"version"`
	}
	if json.Unmarshal(b, &pkg) != nil {
		return ""
	}
	return pkg.Version
}

// runStreaming runs cmd, passing each line of its stdout and stderr to t.Log as it comes.
func runStreaming(t *testing.T, cmd *exec.Cmd, prefix string) error {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	pump := func(r io.Reader, tag string) {
		defer wg.Done()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			t.Log(prefix + tag + strings.TrimRight(sc.Text(), "\r"))
		}
		if err := sc.Err(); err != nil && !errors.Is(err, os.ErrClosed) {
			t.Logf("%sreading output: %v", prefix, err)
		}
	}
	wg.Add(2)
	go pump(stdout, "")
	go pump(stderr, "stderr: ")
	wg.Wait() // all output read before Wait closes the pipes
	return cmd.Wait()
}
