package ownedstate

import (
	"fmt"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// maxSuffixBytes is MSC3757's limit on what follows a state key's leading user ID, the
// separating "_" included.
const maxSuffixBytes = 256

// Allowed is gomatrixserverlib.Allowed with MSC3757's rule 8 for events of the MSC3757 room
// versions; events of every other version go to gomatrixserverlib.Allowed unchanged.
//
// MSC3757 replaces rule 8 of the room version 10 and 11 authorisation rules ("If the event has
// a state_key that starts with an @ and does not match the sender, reject") with:
//
//  8. If the event has a state_key:
//  1. If the state_key starts with an @:
//  1. If the prefix of the state_key before the first _ that follows the first : (or end
//     of string) is not a valid user ID, reject.
//  2. If the size of the state_key without its leading user ID is greater than 256
//     bytes, reject.
//  3. If the leading user ID does not match the sender, and the sender's power level is
//     not greater than that of the user denoted by that ID, reject.
//  2. Otherwise, if the size of the state_key is greater than 255 bytes, reject.
//
// gomatrixserverlib applies its rule 8 to every event other than m.room.create, m.room.member
// and m.room.aliases (which have rules of their own); those are governed here. A state key
// equal to the sender passes both forms of the rule and goes to gomatrixserverlib as it is.
// For the others, 8.1.1 and 8.1.2 are checked here, then gomatrixserverlib checks every other
// rule (the sender is joined, has the power level the event type needs, the power levels
// rules, ...) on the event presented with the sender's own user ID as its state key, which its
// rule 8 accepts; then 8.1.3 is checked here against the same auth events.
//
// Size rule 8.2 and the 511-byte limit 8.1.2 implies are not reachable: gomatrixserverlib
// refuses to parse an event whose state key is longer than 255 bytes in any room version.
func Allowed(ev gomatrixserverlib.PDU, authEvents gomatrixserverlib.AuthEventProvider, userIDForSender spec.UserIDForSender) error {
	if !Enabled(ev.Version()) || !governed(ev) {
		return gomatrixserverlib.Allowed(ev, authEvents, userIDForSender)
	}
	// Every rule but 8 (the rules before it first: a sender who is not joined or lacks the
	// event type's power level is refused for that, whatever the key).
	if err := gomatrixserverlib.Allowed(asOwnKey{PDU: ev, key: string(ev.SenderID())}, authEvents, userIDForSender); err != nil {
		return err
	}
	// 8.1.1, 8.1.2.
	owner, err := Owner(*ev.StateKey())
	if err != nil {
		return &BadStateKey{Message: err.Error()}
	}
	// 8.1.3.
	if owner == string(ev.SenderID()) {
		return nil
	}
	senderLevel, ownerLevel, err := levels(authEvents, ev.SenderID(), spec.SenderID(owner))
	if err != nil {
		return err
	}
	if senderLevel <= ownerLevel {
		return &gomatrixserverlib.NotAllowed{Message: fmt.Sprintf(
			"sender %q (power level %d) may not overwrite the state of %q (power level %d)",
			ev.SenderID(), senderLevel, owner, ownerLevel)}
	}
	return nil
}

// BadStateKey is Allowed's refusal of an event whose state key starts with "@" without a
// valid user ID (rule 8.1.1) or with too much after it (8.1.2). The client-server API answers
// it with 400 M_BAD_JSON, as Synapse does and Complement's MSC3757 tests expect; it comes only
// after the rules before rule 8 passed, so a sender who may not send the event at all gets 403.
type BadStateKey struct{ Message string }

func (e *BadStateKey) Error() string { return "eventauth: " + e.Message }

// Unwrap makes a BadStateKey a gomatrixserverlib.NotAllowed too, like every other refusal.
func (e *BadStateKey) Unwrap() error { return &gomatrixserverlib.NotAllowed{Message: e.Message} }

// Owner returns the leading user ID of a state key that starts with "@" (MSC3757 rule 8.1.1):
// the part before the first "_" that follows the first ":", or the whole key when no "_"
// follows. It fails when that is not a valid user ID (historical user IDs included, as in
// events) or when more than 256 bytes follow it (8.1.2).
func Owner(stateKey string) (string, error) {
	colon := strings.IndexByte(stateKey, ':')
	if !strings.HasPrefix(stateKey, "@") || colon < 0 {
		return "", fmt.Errorf("state key %q does not start with a user ID", stateKey)
	}
	owner := stateKey
	if i := strings.IndexByte(stateKey[colon+1:], '_'); i >= 0 {
		owner = stateKey[:colon+1+i]
	}
	if _, err := spec.NewUserID(owner, true); err != nil {
		return "", fmt.Errorf("state key %q does not start with a valid user ID: %w", stateKey, err)
	}
	if n := len(stateKey) - len(owner); n > maxSuffixBytes {
		return "", fmt.Errorf("state key %q has %d bytes after its user ID, more than %d", stateKey, n, maxSuffixBytes)
	}
	return owner, nil
}

// governed reports whether ev is a state event that MSC3757's rule 8 decides differently from
// gomatrixserverlib's: see governedKey.
func governed(ev gomatrixserverlib.PDU) bool {
	return ev.StateKey() != nil && governedKey(ev.Type(), *ev.StateKey(), string(ev.SenderID()))
}

// governedKey reports whether a state event of the type, key and sender goes through rule 8
// with a key that starts with "@" and is not the sender's: the event types gomatrixserverlib
// applies rule 8 to (not m.room.create, m.room.member, m.room.aliases).
func governedKey(eventType, stateKey, sender string) bool {
	switch eventType {
	case spec.MRoomCreate, spec.MRoomMember, spec.MRoomAliases:
		return false
	}
	return strings.HasPrefix(stateKey, "@") && stateKey != sender
}

// levels returns the power levels of sender and owner according to authEvents, as
// gomatrixserverlib's rules compute them: from the m.room.power_levels event, or, without one,
// the room creator (the create event's sender) above everyone else.
func levels(authEvents gomatrixserverlib.AuthEventProvider, sender, owner spec.SenderID) (int64, int64, error) {
	creator := ""
	if create, err := authEvents.Create(); err == nil && create != nil {
		creator = string(create.SenderID())
	}
	pl, err := gomatrixserverlib.NewPowerLevelContentFromAuthEvents(authEvents, creator)
	if err != nil {
		return 0, 0, &gomatrixserverlib.NotAllowed{Message: fmt.Sprintf("power levels: %v", err)}
	}
	return pl.UserLevel(sender), pl.UserLevel(owner), nil
}

// asOwnKey presents an event to gomatrixserverlib's rules with another state key. Only rule 8
// reads the state key of the events governed here, so with the sender's own user ID as the key
// every other rule sees the event as it is.
type asOwnKey struct {
	gomatrixserverlib.PDU
	key string
}

// StateKey implements gomatrixserverlib.PDU.
func (e asOwnKey) StateKey() *string { return &e.key }

// StateKeyEquals implements gomatrixserverlib.PDU.
func (e asOwnKey) StateKeyEquals(s string) bool { return e.key == s }
