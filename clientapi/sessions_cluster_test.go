package clientapi

import (
	"testing"
	"time"
)

// TestSignedNonces: in a cluster a nonce issued by one process is good once on another,
// and a forged, altered or expired one is not.
func TestSignedNonces(t *testing.T) {
	now := time.Unix(1700000000, 0)
	clock := func() time.Time { return now }
	a, b := newSessionIDs(5*time.Minute, 100), newSessionIDs(5*time.Minute, 100)
	a.now, b.now = clock, clock
	a.key, b.key = []byte("k"), []byte("k")
	n := a.issue()
	if !b.take(n) {
		t.Fatal("nonce of process a refused by b")
	}
	if b.take(n) {
		t.Fatal("nonce taken twice on b")
	}
	if !a.take(n) || a.take(n) {
		t.Fatal("nonce not good exactly once on a")
	}
	if b.take(n[:len(n)-1]+"x") || b.take("forged.1.sig") {
		t.Fatal("altered or forged nonce accepted")
	}
	old := a.issue()
	now = now.Add(6 * time.Minute)
	if b.take(old) {
		t.Fatal("expired nonce accepted")
	}
	c := newSessionIDs(5*time.Minute, 100)
	c.now, c.key = clock, []byte("other")
	if c.take(a.issue()) {
		t.Fatal("nonce signed with another key accepted")
	}
}
