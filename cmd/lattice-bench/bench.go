package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"syscall"
	"time"
)

// bench runs scenarios, each on a fresh server, and keeps what they share: the binary, the
// HTTP client and the member populations.
type bench struct {
	bin     string
	workdir string
	keep    bool      // keep data directories and databases
	pg      *postgres // nil: SQLite
	hc      *http.Client
	sizes   Sizes
	log     io.Writer
	start   time.Time
	pops    map[int]*population
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "[%6.0fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

// population returns the template of n registered members, building it the first time.
func (b *bench) population(ctx context.Context, n int) (*population, error) {
	if p, ok := b.pops[n]; ok {
		return p, nil
	}
	p, err := b.buildPopulation(ctx, n)
	if err != nil {
		return nil, err
	}
	b.pops[n] = p
	return p, nil
}

// close removes the populations.
func (b *bench) close(ctx context.Context) {
	if b.keep {
		return
	}
	for _, p := range b.pops {
		p.remove(ctx, b.pg)
	}
}

// runScenario runs sc once on a fresh server and returns what it measured. A scenario that
// cannot go on records why in Run.Errors, like a failed check.
func (b *bench) runScenario(ctx context.Context, sc scenario) Run {
	run := Run{Scenario: sc.name}
	// The members are registered once for every run (and scenario) that needs as many, before
	// the run's clock starts.
	var pop *population
	if n := sc.members(b.sizes); n > 0 {
		var err error
		if pop, err = b.population(ctx, n); err != nil {
			run.Errors = append(run.Errors, err.Error())
			return run
		}
	}
	run.LoadAvgStart = loadAvg()
	t0, cpu0 := time.Now(), selfCPU()
	err := b.runOnServer(ctx, sc, pop, &run)
	if err != nil {
		run.Errors = append(run.Errors, err.Error())
	}
	run.WallSeconds = time.Since(t0).Seconds()
	run.BenchCPUSeconds = (selfCPU() - cpu0).Seconds()
	run.LoadAvgEnd = loadAvg()
	return run
}

func (b *bench) runOnServer(ctx context.Context, sc scenario, pop *population, run *Run) error {
	dir, err := os.MkdirTemp(b.workdir, sc.name+"-")
	if err != nil {
		return err
	}
	database, dbURL, err := b.instantiate(ctx, pop, dir)
	if err != nil {
		return err
	}
	defer b.cleanup(dir, database)
	var svc *asEndpoint
	extra := ""
	if sc.service != asNone {
		if svc, extra, err = startEndpoint(sc.service, dir); err != nil {
			return err
		}
		defer svc.close()
	}
	srv, err := startServer(ctx, b.bin, dir, dbURL, extra)
	if err != nil {
		return err
	}
	e := &env{b: b, srv: srv, sz: b.sizes, run: run, service: svc}
	if pop != nil {
		for _, u := range pop.users {
			e.members = append(e.members, &client{hc: b.hc, base: srv.URL, UserID: u.UserID, Token: u.Token})
		}
	}
	runErr := sc.run(ctx, e)
	u, stopErr := srv.stop()
	run.ServerCPUSeconds, run.PeakRSSMB = u.CPU.Seconds(), u.PeakRSSMB
	return errors.Join(runErr, stopErr)
}

func (b *bench) cleanup(dir, database string) {
	if b.keep {
		b.logf("kept %s %s", dir, database)
		return
	}
	os.RemoveAll(dir)
	if database != "" {
		_ = b.pg.drop(context.Background(), database)
	}
}

// selfCPU returns the CPU time this process (the load generator) has used: it shares the
// machine with the server, so it says how much of the machine the server had.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// env is what a scenario works with: its server, its members and the run it reports into.
type env struct {
	b       *bench
	srv     *server
	sz      Sizes
	members []*client // the population, when the scenario asked for one
	run     *Run
	service *asEndpoint // the application service's endpoint, when the scenario registers one
}

// figure records a measured value.
func (e *env) figure(name string, value float64, unit string) {
	e.run.Figures = append(e.run.Figures, Figure{name, value, unit})
	e.b.logf("  %s: %s %s", name, formatValue(value), unit)
}

// check records a failed correctness check; the scenario goes on.
func (e *env) check(err error) {
	if err != nil {
		e.run.Errors = append(e.run.Errors, err.Error())
		e.b.logf("  FAILED: %v", err)
	}
}

func (e *env) logf(format string, args ...any) { e.b.logf("  "+format, args...) }

// register registers n new users named prefix0, prefix1, ... concurrently.
func (e *env) register(ctx context.Context, prefix string, n int) ([]*client, error) {
	cs := make([]*client, n)
	err := parallel(ctx, n, registerWorkers, func(i int) error {
		c, err := register(ctx, e.b.hc, e.srv.URL, fmt.Sprintf("%s%d", prefix, i))
		cs[i] = c
		return err
	})
	return cs, err
}

// waitQuiet waits until the server uses less than 5% of a core over a second, or limit passes;
// it reports whether the server went quiet.
func (e *env) waitQuiet(ctx context.Context, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		c0 := e.srv.cpu()
		time.Sleep(time.Second)
		if e.srv.cpu()-c0 < 50*time.Millisecond {
			return true
		}
	}
	return false
}

// measureCPU runs fn and returns the server CPU time it took (from /proc, 10 ms resolution).
func (e *env) measureCPU(fn func() error) (time.Duration, error) {
	c0 := e.srv.cpu()
	err := fn()
	return e.srv.cpu() - c0, err
}
