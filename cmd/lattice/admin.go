package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/lattice-chat/lattice/clientapi"
	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/storage"
)

// openConfigDB loads the configuration and opens its database, for the admin commands.
func openConfigDB(ctx context.Context, cfgPath string) (*config.Config, *storage.DB, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, nil, err
	}
	db, err := storage.Open(ctx, cfg.DatabaseURL(), cfg.Database.MaxOpenConns)
	if err != nil {
		return nil, nil, err
	}
	return cfg, db, nil
}

// configCommand parses the arguments of an admin command that takes only --config, then
// loads the configuration and opens its database.
func configCommand(ctx context.Context, name string, args []string, stderr io.Writer) (*config.Config, *storage.DB, error) {
	fs := newFlagSet(name, name+" --config FILE", stderr)
	cfgPath := fs.String("config", "", "configuration file (required)")
	if err := parseFlags(fs, args); err != nil {
		return nil, nil, err
	}
	if *cfgPath == "" {
		return nil, nil, errors.New(name + ": --config is required")
	}
	return openConfigDB(ctx, *cfgPath)
}

// runListUsers prints every account: user ID, admin flag, deactivated flag, creation time.
func runListUsers(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	_, db, err := configCommand(ctx, "list-users", args, stderr)
	if err != nil {
		return err
	}
	defer db.Close()
	accounts, err := db.Accounts(ctx)
	if err != nil {
		return err
	}
	for _, a := range accounts {
		var flags []string
		if a.IsAdmin {
			flags = append(flags, "admin")
		}
		if a.Deactivated {
			flags = append(flags, "deactivated")
		}
		fmt.Fprintf(stdout, "%s\t%s\t%s\n", a.UserID, strings.Join(flags, ","), time.UnixMilli(a.CreatedTS).UTC().Format(time.RFC3339))
	}
	return nil
}

// runResetPassword sets a new password and logs every device of the account out. A running
// server refuses the old tokens at once: its token cache checks a generation this
// transaction increments (storage/cache.go).
func runResetPassword(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("reset-password", "reset-password --config FILE --user NAME [--password P]", stderr)
	cfgPath := fs.String("config", "", "configuration file (required)")
	user := fs.String("user", "", "localpart or user ID (required)")
	password := fs.String("password", "", "new password; asked for when omitted")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" || *user == "" {
		return errors.New("reset-password: --config and --user are required")
	}
	cfg, db, err := openConfigDB(ctx, *cfgPath)
	if err != nil {
		return err
	}
	defer db.Close()
	userID := *user
	if !strings.HasPrefix(userID, "@") {
		userID = "@" + strings.ToLower(userID) + ":" + cfg.ServerName
	}
	if *password == "" {
		if *password, err = readPassword(stderr); err != nil {
			return err
		}
	}
	if err := clientapi.ResetPassword(ctx, db, cfg, userID, *password); err != nil {
		return fmt.Errorf("reset-password: %w", err)
	}
	fmt.Fprintln(stdout, "password reset, devices logged out:", userID)
	return nil
}
