package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"sync/atomic"

	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver "pgx"
)

// postgres hands out a fresh database per server on one PostgreSQL server, so that every
// scenario starts from an empty schema like every SQLite scenario starts from a new file.
type postgres struct {
	admin  *url.URL
	db     *sql.DB
	prefix string       // lattice_bench_PID_, so that concurrent benchmarks do not collide
	n      atomic.Int64 // databases created so far
}

// openPostgres connects to the server of adminURL, a URL of a role allowed to CREATE DATABASE.
func openPostgres(ctx context.Context, adminURL string) (*postgres, error) {
	u, err := url.Parse(adminURL)
	if err != nil {
		return nil, fmt.Errorf("--postgres: %w", err)
	}
	db, err := sql.Open("pgx", adminURL)
	if err != nil {
		return nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("--postgres: %w", err)
	}
	return &postgres{admin: u, db: db, prefix: fmt.Sprintf("lattice_bench_%d_", os.Getpid())}, nil
}

// create makes a new database, a copy of template when it is not empty, and returns its name
// and the URL lattice connects to it with.
func (p *postgres) create(ctx context.Context, template string) (string, string, error) {
	name := fmt.Sprintf("%s%d", p.prefix, p.n.Add(1))
	stmt := "CREATE DATABASE " + name
	if template != "" {
		stmt += " TEMPLATE " + template
	}
	if _, err := p.db.ExecContext(ctx, stmt); err != nil {
		return "", "", fmt.Errorf("%s: %w", stmt, err)
	}
	u := *p.admin
	u.Path = "/" + name
	return name, u.String(), nil
}

// drop removes a database the benchmark created.
func (p *postgres) drop(ctx context.Context, name string) error {
	_, err := p.db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name)
	return err
}

func (p *postgres) Close() error { return p.db.Close() }
