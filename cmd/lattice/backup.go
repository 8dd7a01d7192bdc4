package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/storage"
)

// runBackup handles `lattice backup --config FILE --out PATH`: a consistent copy of the
// SQLite database, made while the server runs, and the list of the files that are not in the
// database. For PostgreSQL it writes nothing and names pg_dump.
func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("backup", "backup --config FILE --out PATH", stderr)
	cfgPath := fs.String("config", "", "configuration file (required)")
	out := fs.String("out", "", "file to write the database backup to; must not exist (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" || *out == "" {
		return errors.New("backup: --config and --out are required")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	err = storage.BackupSQLite(ctx, cfg.DatabaseURL(), *out)
	if errors.Is(err, storage.ErrNotSQLite) {
		fmt.Fprintf(stdout, "The database is PostgreSQL: back it up with its own tools while the server runs, e.g.\n"+
			"  pg_dump --format=custom --file=lattice.dump '%s'\n"+
			"and restore it into an empty database with pg_restore --dbname=URL lattice.dump.\n\n", redactURL(cfg.Database.URL))
		otherFiles(stdout, cfg, *cfgPath)
		return errors.New("backup: nothing written: use pg_dump for PostgreSQL")
	} else if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	info, err := os.Stat(*out)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(stdout, "Wrote %s (%d bytes): a consistent copy of the database %s.\n"+
		"To restore, stop the server and put it in the database's place (removing any -wal and -shm files beside it).\n\n",
		*out, info.Size(), cfg.DatabaseURL())
	otherFiles(stdout, cfg, *cfgPath)
	return nil
}

// otherFiles lists what a backup of the database does not hold.
func otherFiles(w io.Writer, cfg *config.Config, cfgPath string) {
	fmt.Fprintln(w, "Not in the database; copy these too:")
	fmt.Fprintf(w, "  signing key:   %s  (the server's identity towards other servers)\n", cfg.KeyPath())
	fmt.Fprintf(w, "  media:         %s/  (uploaded files)\n", cfg.MediaPath())
	fmt.Fprintf(w, "  configuration: %s\n", cfgPath)
	if cfg.FederationAPI.Listen != "" {
		cert, key, generated := cfg.FederationTLSPaths()
		what := "federation TLS certificate"
		if generated {
			what += " (self-signed, made on first start)"
		}
		fmt.Fprintf(w, "  %s: %s and %s\n", what, cert, key)
	}
}

// redactURL hides the password of a database URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "postgres://..."
	}
	return u.Redacted()
}
