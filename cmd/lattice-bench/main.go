// Command lattice-bench measures a lattice server from a separate process over real HTTP
// (keep-alive connections on loopback), one fresh server per scenario run. For every scenario
// it prints latency and throughput figures together with the server's CPU time and peak RSS as
// the OS measured them, and it checks that every message the server acknowledged is found
// exactly once, through /messages and through a receiver's /sync. It is a load generator, not
// part of the server: it imports no lattice package and talks to the `lattice` binary only
// through its command line and its client API.
//
//	go build -o /tmp/lattice ./cmd/lattice
//	go run ./cmd/lattice-bench --lattice /tmp/lattice --runs 3 --json bench.json
package main

import (
	"context"
	"debug/buildinfo"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m := NewMain()
	err := m.ParseFlags(os.Args[1:], os.Stderr)
	if err == nil {
		err = m.Run(ctx, os.Stdout)
	}
	m.Close()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "lattice-bench:", err)
		os.Exit(1)
	}
}

// Main is the benchmark command: its flags, then one run.
type Main struct {
	Lattice   string
	Postgres  string
	Scenarios []scenario
	Runs      int
	JSONPath  string
	Workdir   string
	Keep      bool
	Sizes     Sizes
	Log       io.Writer

	tmp    string // directory made by Run for the binary and data; removed by Close
	Failed bool   // a check failed or a scenario could not run
}

// NewMain returns a Main with the defaults of the flags.
func NewMain() *Main { return &Main{Runs: 1, Sizes: defaultSizes(1, 2000), Log: os.Stderr} }

const usage = `lattice-bench runs load scenarios against fresh lattice servers and prints a table.

Usage: lattice-bench [flags]

Scenarios (--scenarios a,b,c; "default" is every one not marked opt-in, "all" is every one):
`

// ParseFlags reads the command line.
func (m *Main) ParseFlags(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("lattice-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&m.Lattice, "lattice", "", "the lattice binary (default: go build ./cmd/lattice into a temporary directory)")
	fs.StringVar(&m.Postgres, "postgres", "", "PostgreSQL admin URL (a role that may CREATE DATABASE): run on PostgreSQL, one new database per server")
	names := fs.String("scenarios", "default", "comma-separated scenarios, or default, or all")
	fs.IntVar(&m.Runs, "runs", 1, "runs of each scenario; the table shows medians")
	fs.StringVar(&m.JSONPath, "json", "", "also write every figure of every run to this JSON file")
	fs.StringVar(&m.Workdir, "workdir", "", "directory for data directories (default: a temporary one)")
	fs.BoolVar(&m.Keep, "keep", false, "keep data directories and databases (for reading the server logs)")
	size := fs.Float64("size", 1, "multiplier of message, room and member counts (0.1 for a quick look)")
	devices := fs.Int("devices", 2000, "long-polling devices (and members) of the longpoll scenario")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		for _, sc := range allScenarios() {
			optIn := ""
			if sc.optIn {
				optIn = " (opt-in)"
			}
			fmt.Fprintf(stderr, "  %-14s %s%s\n", sc.name, sc.about, optIn)
		}
		fmt.Fprintln(stderr, "\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *size <= 0 || m.Runs < 1 || *devices < 2 {
		return errors.New("--size must be positive, --runs at least 1 and --devices at least 2")
	}
	m.Sizes = defaultSizes(*size, *devices)
	var err error
	m.Scenarios, err = selectScenarios(*names)
	return err
}

// selectScenarios resolves the --scenarios list.
func selectScenarios(list string) ([]scenario, error) {
	var out []scenario
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		found := false
		for _, sc := range allScenarios() {
			if name == "all" || (name == "default" && !sc.optIn) || name == sc.name {
				out = append(out, sc)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown scenario %q (see --help)", name)
		}
	}
	return out, nil
}

// Run runs the selected scenarios, prints the table to stdout and writes the JSON file.
func (m *Main) Run(ctx context.Context, stdout io.Writer) error {
	start := time.Now()
	var err error
	if m.tmp, err = os.MkdirTemp(m.Workdir, "lattice-bench-"); err != nil {
		return err
	}
	b := &bench{bin: m.Lattice, workdir: m.tmp, keep: m.Keep, hc: newHTTPClient(), sizes: m.Sizes,
		log: m.Log, start: start, pops: map[int]*population{}}
	if b.bin == "" {
		b.logf("building lattice")
		if b.bin, err = buildLattice(ctx, m.tmp); err != nil {
			return err
		}
	}
	rep := &Report{Date: start.UTC().Format(time.RFC3339), Commit: commitOf(b.bin), Backend: "sqlite",
		Size: m.Sizes.Scale, Runs: m.Runs, CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if m.Postgres != "" {
		if b.pg, err = openPostgres(ctx, m.Postgres); err != nil {
			return err
		}
		defer b.pg.Close()
		rep.Backend = "postgres"
	}
	defer b.close(context.Background())
	for _, sc := range m.Scenarios {
		var runs []Run
		for i := 0; i < m.Runs && ctx.Err() == nil; i++ {
			b.logf("%s, run %d of %d", sc.name, i+1, m.Runs)
			r := b.runScenario(ctx, sc)
			m.Failed = m.Failed || len(r.Errors) > 0
			runs = append(runs, r)
		}
		if len(runs) > 0 {
			rep.Scenarios = append(rep.Scenarios, summarize(sc.name, sc.about, runs))
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	if err := printTable(stdout, rep); err != nil {
		return err
	}
	if m.JSONPath != "" {
		if err := writeJSON(m.JSONPath, rep); err != nil {
			return err
		}
	}
	if m.Failed {
		return errors.New("some checks failed (see above)")
	}
	return ctx.Err()
}

// Close removes the temporary directory unless --keep was given.
func (m *Main) Close() {
	if m.tmp != "" && !m.Keep {
		os.RemoveAll(m.tmp)
	}
}

// commitOf returns the commit the lattice binary was built from (Go stamps it when building
// inside a git checkout, unless -buildvcs=false), else the working directory's; "-dirty" marks
// local changes.
func commitOf(bin string) string {
	if info, err := buildinfo.ReadFile(bin); err == nil {
		var rev, dirty string
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision":
				rev = s.Value
			case s.Key == "vcs.modified" && s.Value == "true":
				dirty = "-dirty"
			}
		}
		if rev != "" {
			return rev + dirty
		}
	}
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := strings.TrimSpace(string(out))
	if changes, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(changes) > 0 {
		rev += "-dirty"
	}
	return rev
}
