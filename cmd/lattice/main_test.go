package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lattice-chat/lattice/internal/config"
)

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args    []string
		wantErr string // "" for success
		wantOut string
	}{
		{[]string{"--help"}, "", "Usage:"},
		{[]string{"generate-config", "--help"}, "help requested", ""},
		{[]string{"bogus"}, `unknown command "bogus"`, ""},
		{[]string{"generate-config", "--server-name", "x"}, "--server-name and --data-dir are required", ""},
		{[]string{"generate-config", "--server-name", "x.org", "--data-dir", dir, "--registration", "sometimes"}, "registration.mode", ""},
		{[]string{"generate-config", "--server-name", "x.org", "--data-dir", dir, "--bogus"}, "flag provided but not defined", ""},
		{[]string{"generate-config", "--server-name", "x.org", "--data-dir", dir}, "", `server_name: "x.org"`},
		{[]string{"serve", "--config", filepath.Join(dir, "missing.yaml")}, "no such file", ""},
		{[]string{"create-account", "--config", filepath.Join(dir, "missing.yaml")}, "--config and --user are required", ""},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		err := run(context.Background(), c.args, &out, &errOut)
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%v: unexpected error %v", c.args, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%v: error %v, want one containing %q", c.args, err, c.wantErr)
		case c.wantOut != "" && !strings.Contains(out.String(), c.wantOut):
			t.Errorf("%v: output %q lacks %q", c.args, out.String(), c.wantOut)
		}
	}
}

func TestCreateAccount(t *testing.T) {
	dir := t.TempDir()
	var cfgText bytes.Buffer
	if err := config.Generate(&cfgText, config.GenerateOptions{ServerName: "x.org", DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "lattice.yaml")
	if err := os.WriteFile(path, cfgText.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	args := []string{"create-account", "--config", path, "--user", "Alice", "--password", "long enough password", "--admin"}
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "@alice:x.org") {
		t.Fatalf("output %q", out.String())
	}
	if err := run(context.Background(), args, &out, &errOut); err == nil || !strings.Contains(err.Error(), "M_USER_IN_USE") {
		t.Fatalf("second create-account: %v", err)
	}
	args[len(args)-2] = "short"
	args[4] = "bob"
	if err := run(context.Background(), args, &out, &errOut); err == nil || !strings.Contains(err.Error(), "M_WEAK_PASSWORD") {
		t.Fatalf("weak password: %v", err)
	}
}

func TestListUsersAndResetPassword(t *testing.T) {
	dir := t.TempDir()
	var cfgText bytes.Buffer
	if err := config.Generate(&cfgText, config.GenerateOptions{ServerName: "x.org", DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "lattice.yaml")
	if err := os.WriteFile(path, cfgText.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var out, errOut bytes.Buffer
	for _, args := range [][]string{
		{"create-account", "--config", path, "--user", "alice", "--password", "first password", "--admin"},
		{"create-account", "--config", path, "--user", "bob", "--password", "bob's password"},
	} {
		if err := run(ctx, args, &out, &errOut); err != nil {
			t.Fatal(err)
		}
	}
	out.Reset()
	if err := run(ctx, []string{"list-users", "--config", path}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "@alice:x.org\tadmin\t") || !strings.HasPrefix(lines[1], "@bob:x.org\t\t") {
		t.Fatalf("list-users printed %q", out.String())
	}
	if err := run(ctx, []string{"reset-password", "--config", path, "--user", "alice", "--password", "second password"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"reset-password", "--config", path, "--user", "nobody", "--password", "whatever it is"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "M_NOT_FOUND") {
		t.Fatalf("reset-password of an unknown user: %v", err)
	}
	if err := run(ctx, []string{"reset-password", "--config", path, "--user", "alice", "--password", "short"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "M_WEAK_PASSWORD") {
		t.Fatalf("weak password: %v", err)
	}
}
