package pusher

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestPostRetries checks that 5xx answers are retried with backoff up to the bounded number
// of attempts, other 4xx are not, and the rejected pushkeys are returned.
func TestPostRetries(t *testing.T) {
	var calls atomic.Int32
	status := func(n int32) int { return http.StatusOK }
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status(calls.Add(1)))
		_, _ = w.Write([]byte(`{"rejected":["dead"]}`))
	}))
	defer gw.Close()
	p := New(Config{Attempts: 3, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}, nil, slog.New(slog.DiscardHandler))
	ctx := context.Background()

	status = func(n int32) int {
		if n < 3 {
			return http.StatusBadGateway
		}
		return http.StatusOK
	}
	rejected, err := p.post(ctx, gw.URL, notification{EventID: "$e"})
	if err != nil || calls.Load() != 3 {
		t.Fatalf("post after two 502s: %v after %d calls", err, calls.Load())
	}
	if d := cmp.Diff([]string{"dead"}, rejected); d != "" {
		t.Errorf("rejected (-want +got):\n%s", d)
	}

	calls.Store(0)
	status = func(int32) int { return http.StatusInternalServerError }
	if _, err := p.post(ctx, gw.URL, notification{}); err == nil || calls.Load() != 3 {
		t.Errorf("post to a failing gateway: %v after %d calls, want an error after 3", err, calls.Load())
	}

	calls.Store(0)
	status = func(int32) int { return http.StatusBadRequest }
	if _, err := p.post(ctx, gw.URL, notification{}); err == nil || calls.Load() != 1 {
		t.Errorf("post answered 400: %v after %d calls, want an error after 1", err, calls.Load())
	}

	// A cancelled context ends the backoff at once.
	calls.Store(0)
	status = func(int32) int { return http.StatusServiceUnavailable }
	slow := New(Config{Attempts: 10, MinBackoff: time.Hour}, nil, slog.New(slog.DiscardHandler))
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { _, err := slow.post(cctx, gw.URL, notification{}); done <- err }()
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Error("cancelled post returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("post did not stop when its context was cancelled")
	}
}

func TestTweaksOf(t *testing.T) {
	got := tweaksOf(`["notify",{"set_tweak":"sound","value":"default"},{"set_tweak":"highlight"},{"set_tweak":"x","value":false}]`)
	want := map[string]any{"sound": "default", "highlight": true, "x": false}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("tweaks (-want +got):\n%s", d)
	}
}
