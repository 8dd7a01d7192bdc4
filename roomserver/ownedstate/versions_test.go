package ownedstate

import (
	"bytes"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
)

// TestRegisteredVersions: the MSC3757 versions are known to gomatrixserverlib as unstable
// versions, behave as their base versions, and the events parsed and built in them report
// them as their version.
func TestRegisteredVersions(t *testing.T) {
	for v, base := range bases {
		impl, err := gomatrixserverlib.GetRoomVersion(v)
		if err != nil {
			t.Fatalf("%s not registered: %v", v, err)
		}
		if impl.Version() != v || impl.Stable() {
			t.Errorf("%s: version %s, stable %v", v, impl.Version(), impl.Stable())
		}
		if _, stable := gomatrixserverlib.StableRoomVersions()[v]; stable {
			t.Errorf("%s listed as stable", v)
		}
		if Base(v) != base || Base(base) != base || !Enabled(v) || Enabled(base) {
			t.Errorf("%s: Base %s, Enabled %v", v, Base(v), Enabled(v))
		}
		b := gomatrixserverlib.MustGetRoomVersion(base)
		if impl.EventFormat() != b.EventFormat() || impl.EventIDFormat() != b.EventIDFormat() ||
			impl.StateResAlgorithm() != b.StateResAlgorithm() || impl.CreatorInCreateEvent() != b.CreatorInCreateEvent() ||
			impl.PrivilegedCreators() != b.PrivilegedCreators() || impl.DomainlessRoomIDs() != b.DomainlessRoomIDs() {
			t.Errorf("%s differs from %s", v, base)
		}

		r := newRoom(t, v)
		create := r.auth[0]
		if create.Version() != v {
			t.Errorf("%s: built event reports version %s", v, create.Version())
		}
		if err := Allowed(create, &gomatrixserverlib.AuthEvents{}, userIDForSender); err != nil {
			t.Errorf("%s: create event not allowed: %v", v, err)
		}
		parsed, err := impl.NewEventFromUntrustedJSON(create.JSON())
		if err != nil {
			t.Fatalf("%s: parse: %v", v, err)
		}
		if parsed.Version() != v || parsed.EventID() != create.EventID() {
			t.Errorf("%s: parsed event reports version %s, ID %s (built %s)", v, parsed.Version(), parsed.EventID(), create.EventID())
		}
		// The redaction algorithm is the base version's.
		topic := r.event("carol", "m.room.topic", "", map[string]any{"topic": "x"})
		got, err := impl.RedactEventJSON(topic.JSON())
		if err != nil {
			t.Fatal(err)
		}
		want, _ := b.RedactEventJSON(topic.JSON())
		if !bytes.Equal(got, want) {
			t.Errorf("%s: redaction %s, base %s", v, got, want)
		}
		parsed.Redact()
		if parsed.Version() != v {
			t.Errorf("%s: redacted event reports version %s", v, parsed.Version())
		}
	}
}
