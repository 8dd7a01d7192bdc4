package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/lattice-chat/lattice/storage"
)

// runAppServices prints each registered application service with its queue: the
// transactions built and not yet acknowledged, their events, and the last delivery error.
func runAppServices(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, db, err := configCommand(ctx, "appservices", args, stderr)
	if err != nil {
		return err
	}
	defer db.Close()
	if len(cfg.AppServices) == 0 {
		fmt.Fprintln(stdout, "no application services registered (app_service_config_files)")
		return nil
	}
	w := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tURL\tPENDING TXNS\tPENDING EVENTS\tLAST ERROR")
	for _, as := range cfg.AppServices {
		url := "(none)"
		if as.URL != nil && *as.URL != "" {
			url = *as.URL
		}
		st, err := db.AppServiceState(ctx, as.ID)
		if errors.Is(err, storage.ErrNotFound) {
			st = &storage.AppServiceState{} // registered since the server last started
		} else if err != nil {
			return err
		}
		lastErr := "-"
		if st.LastError != "" {
			lastErr = fmt.Sprintf("%s (%s)", st.LastError, time.UnixMilli(st.LastErrorTS).UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\n", as.ID, url, st.Pending, st.PendingEvts, lastErr)
	}
	return w.Flush()
}
