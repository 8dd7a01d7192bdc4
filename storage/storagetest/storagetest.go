// Package storagetest runs tests against every storage backend: SQLite in a temporary
// directory and, when LATTICE_TEST_POSTGRES names a PostgreSQL server (an admin URL), a
// fresh PostgreSQL database per test. In CI (CI set) a missing PostgreSQL fails the test
// rather than skipping it.
package storagetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
)

// EnvPostgres is the environment variable holding the PostgreSQL admin URL for tests.
const EnvPostgres = "LATTICE_TEST_POSTGRES"

// Backend is one storage backend under test.
type Backend struct {
	Name string
	// NewURL returns the URL of a new, empty database for the test.
	NewURL func(t testing.TB) string
}

// Backends lists the backends to test.
func Backends() []Backend {
	return []Backend{
		{Name: "sqlite", NewURL: func(t testing.TB) string { return "sqlite:" + filepath.Join(t.TempDir(), "lattice.db") }},
		{Name: "postgres", NewURL: NewPostgresDatabase},
	}
}

// ForEachBackend runs fn as a subtest for every backend.
func ForEachBackend(t *testing.T, fn func(t *testing.T, url string)) {
	for _, b := range Backends() {
		t.Run(b.Name, func(t *testing.T) { fn(t, b.NewURL(t)) })
	}
}

// NewPostgresDatabase creates an empty PostgreSQL database, dropped when the test ends,
// and returns its URL. Without LATTICE_TEST_POSTGRES the test is skipped (failed in CI).
func NewPostgresDatabase(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvPostgres)
	if admin == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set: CI must test PostgreSQL (scripts/test.sh starts a server)", EnvPostgres)
		}
		t.Skipf("%s is not set; PostgreSQL tests skipped (scripts/test.sh starts a server)", EnvPostgres)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "lattice_test_" + hex.EncodeToString(b)
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", admin)
		if err != nil {
			return
		}
		defer db.Close()
		_, _ = db.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// Describe returns a short description of the backends available, for logs.
func Describe() string {
	if os.Getenv(EnvPostgres) == "" {
		return "sqlite"
	}
	return fmt.Sprintf("sqlite, postgres (%s)", os.Getenv(EnvPostgres))
}
