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

// runFederationQueue prints the federation outbox by destination: queued PDUs and EDUs, the
// failed attempts in a row and when the sender may try again. It reads the database only, so
// it works beside a running server.
func runFederationQueue(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	_, db, err := configCommand(ctx, "federation-queue", args, stderr)
	if err != nil {
		return err
	}
	defer db.Close()
	statuses, err := db.FederationQueueStatuses(ctx)
	if err != nil {
		return err
	}
	if len(statuses) == 0 {
		fmt.Fprintln(stdout, "nothing queued for other servers")
		return nil
	}
	w := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(w, "DESTINATION\tPDUS\tEDUS\tFAILURES\tNEXT ATTEMPT")
	now := time.Now()
	for _, s := range statuses {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\n", s.Destination, s.PDUs, s.EDUs, s.Failures, nextAttempt(s, now))
	}
	return w.Flush()
}

// nextAttempt describes when the sender may next try destination s.
func nextAttempt(s storage.FederationQueueStatus, now time.Time) string {
	retry := time.UnixMilli(s.RetryTS)
	switch {
	case s.PDUs == 0 && s.EDUs == 0:
		return "with the next event"
	case s.RetryTS == 0 || !retry.After(now):
		return "now"
	default:
		return fmt.Sprintf("%s (in %s)", retry.UTC().Format(time.RFC3339), retry.Sub(now).Round(time.Second))
	}
}

const federationRetryHelp = `federation-retry --config FILE (SERVER | --all)

Clears the backoff of a destination server (or of every one) after failed federation
transactions, so that the next attempt may start at once. The transaction in flight is kept
and retried with the same ID, as the spec requires.

A running server looks at the stored backoff every 30 seconds while it waits, so a
destination with queued events is retried within half a minute; one with nothing queued is
tried as soon as the next event for it comes.`

// runFederationRetry clears the backoff of one destination or of all.
func runFederationRetry(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("federation-retry", federationRetryHelp, stderr)
	cfgPath := fs.String("config", "", "configuration file (required)")
	all := fs.Bool("all", false, "clear the backoff of every destination")
	// The server name may come before or after the flags.
	if err := fs.Parse(args); err != nil {
		return err
	}
	var server string
	if fs.NArg() > 0 {
		server = fs.Arg(0)
		if err := parseFlags(fs, fs.Args()[1:]); err != nil {
			return err
		}
	}
	if *cfgPath == "" || (server == "") == !*all {
		return errors.New("federation-retry: --config and either a server name or --all are required")
	}
	_, db, err := openConfigDB(ctx, *cfgPath)
	if err != nil {
		return err
	}
	defer db.Close()
	if *all {
		n, err := db.ResetAllFederationBackoffs(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "backoff cleared for %d destinations\n", n)
	} else {
		if err := db.ResetFederationBackoff(ctx, server); errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("federation-retry: nothing was ever sent to %s", server)
		} else if err != nil {
			return err
		}
		fmt.Fprintln(stdout, "backoff cleared:", server)
	}
	fmt.Fprintln(stderr, "a running server retries a destination with queued events within 30 seconds")
	return nil
}
