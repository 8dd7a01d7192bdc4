package presence

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lattice-chat/lattice/storage"
)

type recordingWaker struct {
	mu    sync.Mutex
	wakes []struct {
		stream storage.Stream
		pos    int64
		users  []string
	}
}

func (r *recordingWaker) Wake(stream storage.Stream, pos int64, users []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.wakes = append(r.wakes, struct {
		stream storage.Stream
		pos    int64
		users  []string
	}{stream, pos, slices.Sorted(slices.Values(users))})
}

// TestCoalescer: the position of each presence change reaches the notifier at once, waking
// nobody; the users to wake within the delay are woken together, with the newest position;
// other streams pass at once.
func TestCoalescer(t *testing.T) {
	rec := &recordingWaker{}
	c := NewCoalescer(rec, 50*time.Millisecond)
	c.Wake(storage.StreamPresence, 5, []string{"@a:x", "@b:x"})
	c.Wake(storage.StreamPresence, 7, []string{"@b:x", "@c:x"})
	c.Wake(storage.StreamPresence, 6, []string{"@d:x"})
	c.Wake(storage.StreamReceipts, 3, []string{"@a:x"})
	rec.mu.Lock()
	if len(rec.wakes) != 4 || rec.wakes[1].pos != 7 || rec.wakes[3].stream != storage.StreamReceipts {
		t.Fatalf("before the delay: %+v, want three positions and the receipt", rec.wakes)
	}
	for _, w := range rec.wakes[:3] {
		if len(w.users) != 0 {
			t.Fatalf("before the delay: %+v woke users", w)
		}
	}
	rec.mu.Unlock()
	time.Sleep(200 * time.Millisecond)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.wakes) != 5 {
		t.Fatalf("after the delay: %d wake-ups, want 5", len(rec.wakes))
	}
	w := rec.wakes[4]
	if w.stream != storage.StreamPresence || w.pos != 7 || !slices.Equal(w.users, []string{"@a:x", "@b:x", "@c:x", "@d:x"}) {
		t.Fatalf("gathered wake-up %+v", w)
	}
}
