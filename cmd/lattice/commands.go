package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/lattice-chat/lattice/clientapi"
	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/storage"
)

func runGenerateConfig(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("generate-config", "generate-config --server-name NAME --data-dir DIR [flags]", stderr)
	var opt config.GenerateOptions
	fs.StringVar(&opt.ServerName, "server-name", "", "the server name (required), e.g. example.org")
	fs.StringVar(&opt.DataDir, "data-dir", "", "directory for the database, keys and media (required)")
	fs.StringVar(&opt.ClientAddr, "client-addr", "127.0.0.1:8008", "listen address of the client API")
	fs.StringVar(&opt.FederationAddr, "federation-addr", "", "listen address of the federation API (empty: off)")
	fs.StringVar(&opt.DatabaseURL, "database", "", `database URL: "sqlite:FILE" (default sqlite:lattice.db) or "postgres://..."`)
	fs.StringVar(&opt.RegistrationMode, "registration", config.RegistrationDisabled, "registration mode: open, token or disabled")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if opt.ServerName == "" || opt.DataDir == "" {
		return errors.New("generate-config: --server-name and --data-dir are required")
	}
	cfg := config.Default()
	cfg.ServerName, cfg.DataDir, cfg.Registration.Mode = opt.ServerName, opt.DataDir, opt.RegistrationMode
	cfg.ClientAPI.Listen, cfg.FederationAPI.Listen = opt.ClientAddr, opt.FederationAddr
	if opt.DatabaseURL != "" {
		cfg.Database.URL = opt.DatabaseURL
	}
	if cfg.Registration.Mode == config.RegistrationToken {
		cfg.Registration.Tokens = []string{"placeholder"}
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("generate-config: %w", err)
	}
	return config.Generate(stdout, opt)
}

func runCreateAccount(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("create-account", "create-account --config FILE --user NAME [--password P] [--admin]", stderr)
	cfgPath := fs.String("config", "", "configuration file (required)")
	user := fs.String("user", "", "localpart of the new user (required)")
	password := fs.String("password", "", "password; asked for when omitted")
	admin := fs.Bool("admin", false, "make the user a server administrator")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" || *user == "" {
		return errors.New("create-account: --config and --user are required")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if *password == "" {
		if *password, err = readPassword(stderr); err != nil {
			return err
		}
	}
	db, err := storage.Open(ctx, cfg.DatabaseURL(), cfg.Database.MaxOpenConns)
	if err != nil {
		return err
	}
	defer db.Close()
	userID, err := clientapi.CreateAccount(ctx, db, cfg, strings.ToLower(*user), *password, *admin)
	if err != nil {
		return fmt.Errorf("create-account: %w", err)
	}
	fmt.Fprintln(stdout, "created", userID)
	return nil
}

// readPassword asks for the password twice without echo on a terminal, or reads one line
// from a pipe.
func readPassword(stderr io.Writer) (string, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && line == "" {
			return "", errors.New("create-account: no password given on standard input")
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	fmt.Fprint(stderr, "Password: ")
	p1, err := term.ReadPassword(fd)
	fmt.Fprintln(stderr)
	if err != nil {
		return "", err
	}
	fmt.Fprint(stderr, "Again: ")
	p2, err := term.ReadPassword(fd)
	fmt.Fprintln(stderr)
	if err != nil {
		return "", err
	}
	if string(p1) != string(p2) {
		return "", errors.New("create-account: passwords do not match")
	}
	return string(p1), nil
}
