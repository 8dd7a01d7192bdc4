package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/storage"
)

func TestFederationQueueAndRetry(t *testing.T) {
	dir := t.TempDir()
	var cfgText bytes.Buffer
	if err := config.Generate(&cfgText, config.GenerateOptions{ServerName: "x.org", DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "lattice.yaml")
	if err := os.WriteFile(path, cfgText.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var out, errOut bytes.Buffer
	runOK := func(args ...string) string {
		t.Helper()
		out.Reset()
		if err := run(ctx, args, &out, &errOut); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out.String()
	}
	if got := runOK("federation-queue", "--config", path); !strings.Contains(got, "nothing queued") {
		t.Fatalf("empty queue printed %q", got)
	}

	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	db, err := storage.Open(ctx, cfg.DatabaseURL(), 2)
	if err != nil {
		t.Fatal(err)
	}
	err = db.WithTx(ctx, func(tx *storage.Tx) error {
		room, err := tx.InsertRoom(ctx, "!r:x.org", "12", 1)
		if err != nil {
			return err
		}
		for i, id := range []string{"$1", "$2"} {
			nid, err := tx.InsertEvent(ctx, &storage.Event{EventID: id, RoomNID: room, Type: "m.room.message",
				Sender: "@a:x.org", Depth: int64(i + 1), JSON: []byte(`{}`)})
			if err != nil {
				return err
			}
			if err := tx.QueuePDU(ctx, nid, []string{"down.example", "up.example"}); err != nil {
				return err
			}
		}
		return tx.QueueEDU(ctx, "up.example", "m.typing", []byte(`{}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	retryAt := time.Now().Add(30 * time.Minute)
	for _, b := range []struct {
		dest     string
		failures int
		retry    int64
	}{{"down.example", 7, retryAt.UnixMilli()}, {"past.example", 2, 1000}} {
		if err := db.SetFederationBackoff(ctx, b.dest, b.failures, b.retry); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	got := runOK("federation-queue", "--config", path)
	lines := strings.Split(strings.TrimSpace(got), "\n")
	want := [][]string{
		{"DESTINATION", "PDUS", "EDUS", "FAILURES", "NEXT", "ATTEMPT"},
		{"down.example", "2", "0", "7", retryAt.UTC().Format(time.RFC3339)},
		{"past.example", "0", "0", "2", "with", "the", "next", "event"},
		{"up.example", "2", "1", "0", "now"},
	}
	if len(lines) != len(want) {
		t.Fatalf("federation-queue printed %q", got)
	}
	for i, w := range want {
		if f := strings.Fields(lines[i]); len(f) < len(w) || strings.Join(f[:len(w)], " ") != strings.Join(w, " ") {
			t.Errorf("line %d = %q, want it to start with %q", i, lines[i], w)
		}
	}

	if got := runOK("federation-retry", "down.example", "--config", path); !strings.Contains(got, "backoff cleared: down.example") {
		t.Errorf("federation-retry printed %q", got)
	}
	got = runOK("federation-queue", "--config", path)
	if lines := strings.Split(got, "\n"); len(lines) < 2 || strings.Join(strings.Fields(lines[1]), " ") != "down.example 2 0 0 now" {
		t.Errorf("after federation-retry, federation-queue printed %q", got)
	}
	if got := runOK("federation-retry", "--config", path, "--all"); !strings.Contains(got, "backoff cleared for 1 destinations") {
		t.Errorf("federation-retry --all printed %q", got)
	}
	if got := runOK("federation-queue", "--config", path); strings.Contains(got, "past.example") {
		t.Errorf("past.example still listed after --all: %q", got)
	}

	for _, c := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"federation-retry", "--config", path}, "either a server name or --all"},
		{[]string{"federation-retry", "--config", path, "--all", "x.example"}, "either a server name or --all"},
		{[]string{"federation-retry", "a.example", "b.example", "--config", path}, `unexpected argument "b.example"`},
		{[]string{"federation-retry", "never.example", "--config", path}, "nothing was ever sent to never.example"},
		{[]string{"federation-queue"}, "--config is required"},
		{[]string{"federation-retry", "--help"}, "help requested"},
	} {
		err := run(ctx, c.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%v: error %v, want one containing %q", c.args, err, c.wantErr)
		}
	}
	if !strings.Contains(errOut.String(), "within half a minute") {
		t.Errorf("federation-retry --help does not say how a running server takes it: %q", errOut.String())
	}
}
