package typing

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage"
)

type fakeMembers map[string][]string

func (f fakeMembers) JoinedMembers(_ context.Context, roomID string) ([]string, error) {
	return f[roomID], nil
}

type wake struct {
	pos   int64
	users []string
}

type fakeWaker struct{ wakes []wake }

func (f *fakeWaker) Wake(s storage.Stream, pos int64, users []string) {
	if s != storage.StreamTyping {
		panic("wrong stream " + s)
	}
	f.wakes = append(f.wakes, wake{pos, users})
}

// fakeTimer is an expiry the test fires by hand.
type fakeTimer struct {
	d       time.Duration
	f       func()
	stopped bool
}

func (t *fakeTimer) Stop() bool { t.stopped = true; return true }

func newTest(t *testing.T) (*Typing, *fakeWaker, *[]*fakeTimer) {
	w := &fakeWaker{}
	ty := New(fakeMembers{"!r": {"@a", "@b"}}, w, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var timers []*fakeTimer
	ty.afterFunc = func(d time.Duration, f func()) stopper {
		ft := &fakeTimer{d: d, f: f}
		timers = append(timers, ft)
		return ft
	}
	return ty, w, &timers
}

func TestTypingSetAndExpire(t *testing.T) {
	ty, w, timers := newTest(t)
	start := ty.Pos()
	if len(w.wakes) != 1 || w.wakes[0].pos != start {
		t.Fatalf("New did not announce its start position: %v", w.wakes)
	}
	ty.Set("!r", "@a", true, 0)
	ty.Set("!r", "@b", true, time.Hour)
	if got := []time.Duration{(*timers)[0].d, (*timers)[1].d}; !slices.Equal(got, []time.Duration{DefaultTimeout, MaxTimeout}) {
		t.Errorf("timeouts %v, want the default and the maximum", got)
	}
	users, changed := ty.Changed("!r", start, ty.Pos())
	if !changed || !slices.Equal(users, []string{"@a", "@b"}) {
		t.Errorf("Changed = %v, %v", users, changed)
	}
	// Typing again only renews the timer: no change, no wake.
	before := ty.Pos()
	ty.Set("!r", "@a", true, time.Second)
	if ty.Pos() != before || !(*timers)[0].stopped {
		t.Errorf("renewal: pos %d -> %d, old timer stopped %v", before, ty.Pos(), (*timers)[0].stopped)
	}
	// The stale timer firing changes nothing; the current one ends the typing.
	(*timers)[0].f()
	if ty.Pos() != before {
		t.Errorf("a stale timer changed the state")
	}
	(*timers)[2].f()
	users, changed = ty.Changed("!r", before, ty.Pos())
	if !changed || !slices.Equal(users, []string{"@b"}) {
		t.Errorf("after expiry: Changed = %v, %v", users, changed)
	}
	if _, changed := ty.Changed("!r", ty.Pos(), ty.Pos()+10); changed {
		t.Errorf("Changed after the newest position reported a change")
	}
	if _, changed := ty.Changed("!r", before, before); changed {
		t.Errorf("a change after upTo was reported")
	}
	ty.Set("!r", "@b", false, 0)
	ty.Set("!r", "@b", false, 0) // not typing: no change
	users, changed = ty.Changed("!r", before+1, ty.Pos())
	if !changed || len(users) != 0 {
		t.Errorf("after stop: Changed = %v, %v", users, changed)
	}
	want := []wake{{start, nil}, {start + 1, []string{"@a", "@b"}}, {start + 2, []string{"@a", "@b"}}, {start + 3, []string{"@a", "@b"}}, {start + 4, []string{"@a", "@b"}}}
	if diff := cmp.Diff(want, w.wakes, cmp.AllowUnexported(wake{})); diff != "" {
		t.Errorf("wakes (-want +got):\n%s", diff)
	}
	if _, changed := ty.Changed("!other", 0, ty.Pos()); changed {
		t.Errorf("a room without typing reported a change")
	}
	ty.Close()
	ty.Set("!r", "@a", true, 0)
	if ty.Pos() != start+4 {
		t.Errorf("Set after Close changed the state")
	}
}
