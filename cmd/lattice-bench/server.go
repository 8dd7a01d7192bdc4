package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is one lattice process started for one scenario, with its own data directory (and
// its own PostgreSQL database when the benchmark runs on PostgreSQL).
type server struct {
	URL     string
	dir     string
	cmd     *exec.Cmd
	logFile *os.File
	exited  chan struct{} // closed when cmd.Wait has returned
}

// configTuning replaces lines of the generated configuration. Every request of the benchmark
// comes from 127.0.0.1, so the per-address limits meant for abuse would throttle the setup
// (thousands of registrations) and the long-poll scenario (thousands of connections).
// A setting an older binary does not have (optional) is left out, so that the benchmark can
// measure builds from before it existed.
var configTuning = []struct {
	re       *regexp.Regexp
	with     string
	optional bool
}{
	{regexp.MustCompile(`(?m)^  registrations_per_minute: .*$`), "  registrations_per_minute: 1000000000", false},
	{regexp.MustCompile(`(?m)^  registrations_burst: .*$`), "  registrations_burst: 1000000000", false},
	{regexp.MustCompile(`(?m)^  max_pending_connections_per_address: .*$`), "  max_pending_connections_per_address: 0", true},
}

// generateConfig writes dir/lattice.yaml for a server on port, through the binary's own
// generate-config so that the benchmark runs the configuration an operator would; extra is
// appended (top-level settings of a scenario, "" for none).
func generateConfig(ctx context.Context, bin, dir string, port int, databaseURL, extra string) (string, error) {
	args := []string{"generate-config", "--server-name", "localhost", "--data-dir", dir,
		"--client-addr", fmt.Sprintf("127.0.0.1:%d", port), "--registration", "open"}
	if databaseURL != "" {
		args = append(args, "--database", databaseURL)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("generate-config: %w: %s", err, stderr.String())
	}
	for _, t := range configTuning {
		if !t.re.Match(out) && !t.optional {
			return "", fmt.Errorf("generate-config: no line matches %s", t.re)
		}
		out = t.re.ReplaceAll(out, []byte(t.with))
	}
	out = append(out, extra...)
	path := filepath.Join(dir, "lattice.yaml")
	return path, os.WriteFile(path, out, 0o600)
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startServer generates a configuration in dir (with extra appended), starts `lattice serve`
// and waits until /versions answers.
func startServer(ctx context.Context, bin, dir, databaseURL, extra string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cfgPath, err := generateConfig(ctx, bin, dir, port, databaseURL, extra)
	if err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(filepath.Join(dir, "lattice.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	s := &server{URL: fmt.Sprintf("http://127.0.0.1:%d", port), dir: dir, logFile: logFile, exited: make(chan struct{})}
	s.cmd = exec.Command(bin, "serve", "--config", cfgPath)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	if err := s.waitReady(ctx, 120*time.Second); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *server) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("server exited at start; see %s", s.logFile.Name())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := http.Get(s.URL + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("server did not answer /versions within %s; see %s", limit, s.logFile.Name())
}

// clockTicks is USER_HZ, the unit of the CPU times in /proc/PID/stat: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// cpu returns the CPU time (user and system) the server has used so far, from /proc.
func (s *server) cpu() time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may contain spaces; the fields after it are plain.
	rest := string(data[bytes.LastIndexByte(data, ')')+1:])
	fields := strings.Fields(rest)
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64) // field 14 of the file
	stime, _ := strconv.ParseInt(fields[12], 10, 64) // field 15
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// rssMB returns the server's current resident set size in MB, from /proc.
func (s *server) rssMB() float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// procUsage is what the OS measured of a server process over its whole life.
type procUsage struct {
	CPU       time.Duration
	PeakRSSMB float64
}

// stop ends the server gracefully (SIGTERM, then SIGKILL after 30 s) and returns its CPU time
// and peak RSS from wait4's rusage.
func (s *server) stop() (procUsage, error) {
	defer s.logFile.Close()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	ru, ok := s.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return procUsage{}, errors.New("no rusage for the server process")
	}
	u := procUsage{
		CPU:       time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		PeakRSSMB: float64(ru.Maxrss) / 1024, // KiB on Linux
	}
	if !s.cmd.ProcessState.Success() {
		return u, fmt.Errorf("server exited with %s; see %s", s.cmd.ProcessState, s.logFile.Name())
	}
	return u, nil
}

// buildLattice builds ./cmd/lattice of the module in the working directory into dir.
func buildLattice(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "lattice")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/lattice-chat/lattice/cmd/lattice")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/lattice: %w", err)
	}
	return bin, nil
}

// copyDir copies the regular files under src into dst, which it creates; the configuration
// and the log of the server that made src are left behind.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o700)
		case rel == "lattice.yaml" || rel == "lattice.log" || !d.Type().IsRegular():
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o600)
	})
}
