package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"
)

// population is a data directory (and, on PostgreSQL, a template database) holding n
// registered accounts with one device each, made once per benchmark and copied for every
// scenario that needs that many members. Registration hashes each password with bcrypt, about
// 0.1 CPU seconds an account: registering 2,000 members for every run of every scenario would
// cost minutes of setup, while copying the data takes a second. The copy is served by a new
// process, so no cache of the registering server survives into a measurement.
type population struct {
	dir      string
	database string // template database on PostgreSQL; "" on SQLite
	users    []credential
}

// credential is a registered member: its user ID and access token.
type credential struct {
	UserID, Token string
}

// registerWorkers bounds the concurrent registrations: bcrypt keeps the server's cores busy
// with a few, and more only queue.
const registerWorkers = 8

// buildPopulation starts a server on a new data directory, registers n users named m0, m1, ...
// and stops it.
func (b *bench) buildPopulation(ctx context.Context, n int) (*population, error) {
	t0 := time.Now()
	dir, err := os.MkdirTemp(b.workdir, fmt.Sprintf("population-%d-", n))
	if err != nil {
		return nil, err
	}
	p := &population{dir: dir, users: make([]credential, n)}
	var dbURL string
	if b.pg != nil {
		if p.database, dbURL, err = b.pg.create(ctx, ""); err != nil {
			return nil, err
		}
	}
	srv, err := startServer(ctx, b.bin, dir, dbURL, "")
	if err != nil {
		return nil, err
	}
	err = registerAll(ctx, b.hc, srv.URL, p.users)
	if _, stopErr := srv.stop(); err == nil {
		err = stopErr
	}
	if err != nil {
		return nil, fmt.Errorf("population of %d: %w", n, err)
	}
	b.logf("registered %d members in %.0f s (kept as a template)", n, time.Since(t0).Seconds())
	return p, nil
}

// registerAll registers users m0 ... m(len(creds)-1) and fills creds.
func registerAll(ctx context.Context, hc *http.Client, base string, creds []credential) error {
	return parallel(ctx, len(creds), registerWorkers, func(i int) error {
		c, err := register(ctx, hc, base, fmt.Sprintf("m%d", i))
		if err != nil {
			return err
		}
		creds[i] = credential{c.UserID, c.Token}
		return nil
	})
}

// instantiate prepares dir (and a database copied from the template) for a new server and
// returns the database URL ("" for SQLite in dir).
func (b *bench) instantiate(ctx context.Context, p *population, dir string) (database, dbURL string, err error) {
	if p != nil {
		if err := copyDir(p.dir, dir); err != nil {
			return "", "", err
		}
	}
	if b.pg == nil {
		return "", "", nil
	}
	template := ""
	if p != nil {
		template = p.database
	}
	return b.pg.create(ctx, template)
}

// remove deletes the population's directory and database.
func (p *population) remove(ctx context.Context, pg *postgres) {
	os.RemoveAll(p.dir)
	if pg != nil && p.database != "" {
		_ = pg.drop(ctx, p.database)
	}
}

// parallel calls fn(0) ... fn(n-1) on at most workers goroutines and returns the first error;
// after an error no new call starts.
func parallel(ctx context.Context, n, workers int, fn func(i int) error) error {
	var (
		mu       sync.Mutex
		next     int
		firstErr error
		wg       sync.WaitGroup
	)
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if next >= n || firstErr != nil || ctx.Err() != nil {
			return 0, false
		}
		next++
		return next - 1, true
	}
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, ok := take(); ok; i, ok = take() {
				if err := fn(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}
