// Package oidctest runs the OpenID Connect provider the tests sign in at: the oidc-provider
// npm package (a certified OpenID provider implementation) under node, with its built-in
// login and consent pages. The e2e tests and the sso package's tests share it; nothing else
// imports it.
package oidctest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Version is the oidc-provider version e2e/oidcprovider/package.json pins.
const Version = "9.13.3"

// ClientID is the one client every provider started here accepts.
const ClientID = "lattice"

// Start runs dir's provider.mjs with node on a free loopback port, accepting the client
// ClientID with secret and redirectURI, and the given accounts (claims keyed by subject,
// which is also the login name typed on the provider's login page). It returns the issuer
// URL; the provider stops when the test ends, and its log is shown if the test failed.
func Start(t testing.TB, node, dir, secret, redirectURI string, accounts map[string]map[string]any) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf, _ := json.Marshal(map[string]any{
		"port":     port,
		"client":   map[string]any{"client_id": ClientID, "client_secret": secret, "redirect_uris": []string{redirectURI}},
		"accounts": accounts,
	})
	if dir, err = filepath.Abs(dir); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, node, "provider.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OIDC_PROVIDER="+string(conf))
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "provider.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("OpenID provider log:\n%s", b)
		}
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "listening" {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("the OpenID provider exited before listening")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the OpenID provider did not start")
	}
	return fmt.Sprintf("http://127.0.0.1:%d", port)
}
