package roomserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/lattice-chat/lattice/storage"
)

// TestRetryConflicts: an input that loses a write conflict runs again (a bounded number of
// times); any other outcome is returned at once.
func TestRetryConflicts(t *testing.T) {
	conflict := fmt.Errorf("commit: %w", storage.ErrConflict)
	other := errors.New("disk full")
	for _, tc := range []struct {
		name      string
		results   []error // what the successive runs return (the last repeats)
		wantRuns  int
		wantError error
	}{
		{"success", []error{nil}, 1, nil},
		{"conflict then success", []error{conflict, conflict, nil}, 3, nil},
		{"other error", []error{other}, 1, other},
		{"rejection after a conflict", []error{conflict, rejected("no")}, 2, &RejectedError{}},
		{"conflicts forever", []error{conflict}, maxConflictAttempts, storage.ErrConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			runs := 0
			err := s.retryConflicts(context.Background(), "!r:x", func() error {
				res := tc.results[min(runs, len(tc.results)-1)]
				runs++
				return res
			})
			if runs != tc.wantRuns {
				t.Errorf("ran %d times, want %d", runs, tc.wantRuns)
			}
			var rej *RejectedError
			switch {
			case tc.wantError == nil && err != nil:
				t.Errorf("error %v, want nil", err)
			case errors.As(tc.wantError, &rej) && !errors.As(err, &rej):
				t.Errorf("error %v, want a rejection", err)
			case tc.wantError != nil && !errors.As(tc.wantError, &rej) && !errors.Is(err, tc.wantError):
				t.Errorf("error %v, want %v", err, tc.wantError)
			}
		})
	}
}
