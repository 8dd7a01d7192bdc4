package presence

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lattice-chat/lattice/storage"
)

type fakeWaker struct{ positions []int64 }

func (f *fakeWaker) Wake(s storage.Stream, pos int64, users []string) {
	if s != storage.StreamPresence {
		panic("wrong stream " + s)
	}
	f.positions = append(f.positions, pos)
}

// fakeTimer is a timer the test fires by hand.
type fakeTimer struct {
	d       time.Duration
	f       func()
	stopped bool
}

func (t *fakeTimer) Stop() bool { t.stopped = true; return true }

// harness is a Service on SQLite with a clock and timers the test drives.
type harness struct {
	t      *testing.T
	s      *Service
	db     *storage.DB
	waker  *fakeWaker
	now    time.Time
	timers []*fakeTimer
}

func newHarness(t *testing.T, db *storage.DB) *harness {
	ctx := context.Background()
	if db == nil {
		var err error
		db, err = storage.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "p.db"), 2)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
	}
	h := &harness{t: t, db: db, waker: &fakeWaker{}, now: time.UnixMilli(1_700_000_000_000)}
	h.s = New(Config{}, db, h.waker, slog.New(slog.NewTextHandler(io.Discard, nil)))
	h.s.now = func() time.Time { return h.now }
	h.s.afterFunc = func(d time.Duration, f func()) stopper {
		ft := &fakeTimer{d: d, f: f}
		h.timers = append(h.timers, ft)
		return ft
	}
	return h
}

// armed returns the live timers due after d.
func (h *harness) armed(d time.Duration) []*fakeTimer {
	var out []*fakeTimer
	for _, ft := range h.timers {
		if !ft.stopped && ft.d == d {
			out = append(out, ft)
		}
	}
	return out
}

// fire fires the one live timer due after d.
func (h *harness) fire(d time.Duration) {
	h.t.Helper()
	live := h.armed(d)
	if len(live) != 1 {
		h.t.Fatalf("%d live timers due after %v, want 1", len(live), d)
	}
	live[0].stopped = true
	live[0].f()
}

func (h *harness) expect(state string, lastActive time.Time, wakes int) {
	h.t.Helper()
	p, err := h.s.current(context.Background(), "@a:x")
	if err != nil {
		h.t.Fatal(err)
	}
	if p.State != state || p.LastActiveTS != lastActive.UnixMilli() || len(h.waker.positions) != wakes {
		h.t.Fatalf("presence %s, last active %d, %d wakes; want %s, %d, %d",
			p.State, p.LastActiveTS, len(h.waker.positions), state, lastActive.UnixMilli(), wakes)
	}
}

func (h *harness) sync(setPresence string) func() {
	h.t.Helper()
	return h.s.Syncing(context.Background(), "@a:x", setPresence)
}

func TestPresenceLifecycle(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	const idle, offline = 5 * time.Minute, 30 * time.Second
	t0 := h.now

	// A sync marks an offline user online; its end arms the offline timer.
	done := h.sync("")
	h.expect(Online, t0, 1)
	if len(h.armed(idle)) != 1 || len(h.armed(offline)) != 0 {
		t.Fatalf("while syncing: %d idle and %d offline timers", len(h.armed(idle)), len(h.armed(offline)))
	}
	done()

	// Activity moves the last active time without waking anyone; the idle timer then re-arms.
	h.now = t0.Add(2 * time.Minute)
	if err := h.s.Active(ctx, "@a:x"); err != nil {
		t.Fatal(err)
	}
	h.expect(Online, t0.Add(2*time.Minute), 1)
	h.now = t0.Add(6 * time.Minute)
	h.fire(idle) // the re-armed timer, due 5 minutes after the activity
	h.expect(Online, t0.Add(2*time.Minute), 1)
	if len(h.armed(time.Minute)) != 1 {
		t.Fatalf("idle timer not re-armed for the remaining minute")
	}
	h.now = t0.Add(7 * time.Minute)
	h.fire(time.Minute)
	h.expect(Unavailable, t0.Add(2*time.Minute), 2)

	// A sync does not bring an idle user back; activity does.
	h.sync("")()
	h.expect(Unavailable, t0.Add(2*time.Minute), 2)
	if err := h.s.Active(ctx, "@a:x"); err != nil {
		t.Fatal(err)
	}
	h.expect(Online, h.now, 3)

	// set_presence=unavailable marks idle; set_presence=offline changes nothing.
	h.sync(Unavailable)()
	h.expect(Unavailable, h.now, 4)
	h.sync(Offline)()
	h.expect(Unavailable, h.now, 4)

	// No offline while a sync is in progress; offline after the last one ended.
	done = h.sync("")
	if len(h.armed(offline)) != 0 {
		t.Fatalf("offline timer live during a sync")
	}
	done()
	h.fire(offline)
	h.expect(Offline, h.now, 5)

	// An explicit online with a message; a new service re-arms from the database at start.
	if err := h.s.Set(ctx, "@a:x", Online, "here"); err != nil {
		t.Fatal(err)
	}
	h.expect(Online, h.now, 6)
	h.s.Close()
	h2 := newHarness(t, h.db)
	if err := h2.s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	h2.now = h.now.Add(time.Minute)
	h2.fire(offline)
	p, err := h2.db.Presence(ctx, "@a:x")
	if err != nil || p.State != Offline || p.StatusMsg != "here" {
		t.Fatalf("after restart and timeout: %+v, %v", p, err)
	}
}

func TestContent(t *testing.T) {
	now := time.UnixMilli(10_000)
	c := Content(&storage.Presence{State: Online, StatusMsg: "hi", LastActiveTS: 4_000}, now)
	if c["presence"] != Online || c["last_active_ago"] != int64(6_000) || c["currently_active"] != true || c["status_msg"] != "hi" {
		t.Errorf("online content: %v", c)
	}
	c = Content(&storage.Presence{State: Offline}, now)
	if len(c) != 1 || c["presence"] != Offline {
		t.Errorf("offline content: %v", c)
	}
}

// TestPublisher: every change of a local user's presence is published, whether explicit, by
// /sync or by the offline timer; a remote user's presence is stored but not published, and
// gets no timers after a restart.
func TestPublisher(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	h.s.cfg.IsLocal = func(u string) bool { return strings.HasSuffix(u, ":x") }
	var published []string
	h.s.SetPublisher(func(_ context.Context, userID string) { published = append(published, userID) })
	if err := h.s.Set(ctx, "@a:x", Unavailable, "away"); err != nil {
		t.Fatal(err)
	}
	if len(published) != 1 {
		t.Fatalf("published %v after the explicit change, want [@a:x]", published)
	}
	done := h.sync(Online)
	done()
	before := len(published)
	h.fire(h.s.cfg.OfflineAfter)
	if p, _ := h.s.current(ctx, "@a:x"); p.State != Offline || len(published) != before+1 {
		t.Fatalf("after the offline timer: state %s, published %v; want offline, published once more", p.State, published)
	}
	for _, u := range published {
		if u != "@a:x" {
			t.Fatalf("published %v, want only @a:x", published)
		}
	}
	published = nil
	if err := h.s.Set(ctx, "@r:remote", Online, ""); err != nil {
		t.Fatal(err)
	}
	if len(published) != 0 {
		t.Fatalf("a remote user's presence was published: %v", published)
	}
	restarted := newHarness(t, h.db)
	restarted.s.cfg.IsLocal = h.s.cfg.IsLocal
	if err := restarted.s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ft := range restarted.timers {
		if !ft.stopped && len(restarted.armed(ft.d)) > 1 {
			t.Fatalf("timers armed for a remote user after a restart: %d due after %v", len(restarted.armed(ft.d)), ft.d)
		}
	}
}
