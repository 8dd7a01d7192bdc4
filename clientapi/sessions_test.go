package clientapi

import (
	"testing"
	"time"
)

func TestSessionIDsBoundedAndExpiring(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newSessionIDs(time.Minute, 100)
	s.now = func() time.Time { return now }
	first := s.issue()
	for i := 0; i < 10_000; i++ {
		s.issue()
	}
	if n := s.size(); n != 100 {
		t.Fatalf("holds %d IDs, want the cap of 100", n)
	}
	if s.take(first) {
		t.Error("the oldest ID survived 10,000 newer ones past the cap")
	}
	id := s.issue()
	if !s.take(id) {
		t.Fatal("a fresh ID was not accepted")
	}
	if s.take(id) {
		t.Error("an ID was accepted twice")
	}
	old := s.issue()
	now = now.Add(2 * time.Minute)
	if s.take(old) {
		t.Error("an expired ID was accepted")
	}
	s.issue()
	if n := s.size(); n != 1 {
		t.Errorf("holds %d IDs after every other expired, want 1", n)
	}
	if c := cap(s.order); c > 4*100+100 {
		t.Errorf("queue capacity %d keeps growing", c)
	}
}
