package syncapi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/storage"
	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestDiffConn: a write holds only the rooms that changed or were added, and names the rooms
// dropped; a connection that started again replaces its stored rooms whole.
func TestDiffConn(t *testing.T) {
	members := map[string]bool{"@a:x": true}
	prev := &connState{pos: 1, rooms: map[string]sentRoom{
		"!same:x":    {upTo: 5, membership: "join", members: members},
		"!changed:x": {upTo: 5, membership: "join"},
		"!gone:x":    {upTo: 5, membership: "join"},
		"!members:x": {upTo: 5, membership: "join", members: members},
	}}
	next := &connState{pos: 2, rooms: map[string]sentRoom{
		"!same:x":    {upTo: 5, membership: "join", members: members},
		"!changed:x": {upTo: 6, membership: "join"},
		"!new:x":     {upTo: 6, membership: "invite"},
		"!members:x": {upTo: 5, membership: "join", members: map[string]bool{"@a:x": true, "@b:x": true}},
	}}
	key := connKey{"@u:x", "DEV", ""}
	w := diffConn(key, prev, next, false)
	var written []string
	for roomID := range w.Rooms {
		written = append(written, roomID)
	}
	sort.Strings(written)
	if d := cmp.Diff([]string{"!changed:x", "!members:x", "!new:x"}, written); d != "" || w.Replace || w.Pos != 2 {
		t.Errorf("rooms written (-want +got):\n%s (replace %v, pos %d)", d, w.Replace, w.Pos)
	}
	if d := cmp.Diff([]string{"!gone:x"}, w.Dropped); d != "" {
		t.Errorf("rooms dropped (-want +got):\n%s", d)
	}
	if w := diffConn(key, prev, next, true); !w.Replace || len(w.Rooms) != 4 || len(w.Dropped) != 0 {
		t.Errorf("a restarted connection: replace %v, %d rooms, dropped %v", w.Replace, len(w.Rooms), w.Dropped)
	}
	if w := diffConn(key, nil, next, false); !w.Replace || len(w.Rooms) != 4 {
		t.Errorf("nothing written before: replace %v, %d rooms", w.Replace, len(w.Rooms))
	}
}

// TestConnStoreRoundTrip: states committed while the writer flushes are written, the newest
// of each connection wins, and a connection read back (after a "restart": a new Server on the
// same database) equals what was committed, under its own pos only.
func TestConnStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	db, err := storage.Open(ctx, storagetest.Backends()[0].NewURL(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s := &Server{db: db, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	key := connKey{"@a:x", "DEV", "main"}
	base, err := s.sliding.begin(key, "")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { // flushes racing the commits
		defer close(done)
		for range 20 {
			s.sliding.store.flush()
		}
	}()
	var last *connState
	for i := range 50 {
		st := base.clone()
		st.to = Token{PDU: int64(i), AccountData: 3}
		st.lists = map[string]int{"all": i}
		st.toDevice = 9
		st.rooms[fmt.Sprintf("!r%d:x", i%7)] = sentRoom{upTo: int64(i), membership: "join", timelineLimit: 5,
			stateSig: "sig", members: map[string]bool{"@b:x": true}, receiptsTo: 2}
		s.sliding.commit(key, st)
		base, last = st, st
	}
	<-done
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	again := &Server{db: db, log: s.log}
	got, err := again.loadConn(ctx, key, last.pos)
	if err != nil || got == nil {
		t.Fatalf("load pos %d: %v %v", last.pos, got, err)
	}
	if d := cmp.Diff(last, got, cmp.AllowUnexported(connState{}, sentRoom{}, Token{})); d != "" {
		t.Errorf("loaded state (-committed +loaded):\n%s", d)
	}
	if old, err := again.loadConn(ctx, key, last.pos-1); err != nil || old != nil {
		t.Errorf("an older pos loaded: %v %v", old, err)
	}
	if _, err := again.beginSliding(ctx, key, strconv.FormatInt(last.pos, 10)); err != nil {
		t.Errorf("beginSliding with the newest pos after a restart: %v", err)
	}
}
