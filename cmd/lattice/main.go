// Command lattice is the Lattice Matrix homeserver: `serve` (the default), `generate-config`
// and the administration commands (accounts, port-db, the federation queue). It only wires
// the components together; nothing imports it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `lattice is a Matrix homeserver.

Usage:
  lattice [serve] [--config FILE]
  lattice generate-config --server-name NAME --data-dir DIR [--client-addr HOST:PORT]
                          [--federation-addr HOST:PORT] [--database URL] [--registration MODE]
  lattice create-account --config FILE --user NAME [--password P] [--admin]
  lattice port-db --from SQLITE_FILE --to POSTGRES_URL   (server stopped; target new and empty)
  lattice list-users --config FILE
  lattice reset-password --config FILE --user NAME [--password P]
  lattice federation-queue --config FILE
  lattice federation-retry --config FILE (SERVER | --all)
  lattice appservices --config FILE
  lattice backup --config FILE --out PATH   (SQLite, while the server runs; PostgreSQL: pg_dump)

Run "lattice COMMAND --help" for the flags of a command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "lattice:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		fmt.Fprint(stdout, usage)
		return nil
	}
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return runServe(ctx, args, stderr)
	case "generate-config":
		return runGenerateConfig(args, stdout, stderr)
	case "create-account":
		return runCreateAccount(ctx, args, stdout, stderr)
	case "port-db":
		return runPortDB(ctx, args, stdout, stderr)
	case "list-users":
		return runListUsers(ctx, args, stdout, stderr)
	case "reset-password":
		return runResetPassword(ctx, args, stdout, stderr)
	case "federation-queue":
		return runFederationQueue(ctx, args, stdout, stderr)
	case "federation-retry":
		return runFederationRetry(ctx, args, stdout, stderr)
	case "backup":
		return runBackup(ctx, args, stdout, stderr)
	case "appservices":
		return runAppServices(ctx, args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		if cmd == "-h" || cmd == "--help" {
			fmt.Fprint(stdout, usage)
			return nil
		}
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name, help string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: lattice %s\n\nFlags:\n", help)
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
