// Package ownedstate implements MSC3757 ("Restricting who can overwrite a state event") as the
// unstable room versions org.matrix.msc3757.10 and org.matrix.msc3757.11: room versions 10 and
// 11 whose authorisation rule 8 ("a state_key that starts with @ must equal the sender") becomes
// "a state_key that starts with a user ID, alone or followed by _, may be written by that user,
// or by a user with a greater power level than theirs". MatrixRTC (Element Call) keys its call
// membership state by "@user:server_DEVICE_m.call" in these rooms, so only that user (or a
// moderator above them) can overwrite it.
//
// gomatrixserverlib knows neither the versions nor the rule. This package registers the
// versions with it at init (registerVersions) and wraps its authorisation rules (Allowed): the
// MSC's rule 8 is decided here and every other rule is still gomatrixserverlib's. Lattice's own
// state resolution (roomserver/stateres.go) runs the iterative auth checks through Allowed, so
// resolution follows the same rule.
//
// The package imports gomatrixserverlib only: no storage, no HTTP.
package ownedstate

import (
	"fmt"
	"reflect"

	"github.com/matrix-org/gomatrixserverlib"
)

// The unstable room versions of MSC3757, built on room versions 10 and 11 as the MSC's
// "Unstable prefix" section says (Synapse and Complement use the same identifiers).
const (
	V10 gomatrixserverlib.RoomVersion = "org.matrix.msc3757.10"
	V11 gomatrixserverlib.RoomVersion = "org.matrix.msc3757.11"
)

// bases maps each MSC3757 version to the stable version it changes.
var bases = map[gomatrixserverlib.RoomVersion]gomatrixserverlib.RoomVersion{
	V10: gomatrixserverlib.RoomVersionV10,
	V11: gomatrixserverlib.RoomVersionV11,
}

// Enabled reports whether rooms of version v follow MSC3757's rule 8.
func Enabled(v gomatrixserverlib.RoomVersion) bool {
	_, ok := bases[v]
	return ok
}

// Base returns the stable room version an MSC3757 version is built on, and any other version
// unchanged. Code that switches on the version number for a format rule (the create event's
// creator field, where redacts lives) asks about Base(v).
func Base(v gomatrixserverlib.RoomVersion) gomatrixserverlib.RoomVersion {
	if b, ok := bases[v]; ok {
		return b
	}
	return v
}

func init() {
	if err := registerVersions(); err != nil {
		panic(err)
	}
}

// registerVersions adds V10 and V11 to gomatrixserverlib's table of room versions
// (gomatrixserverlib.SetRoomVersion), as unstable versions.
//
// An MSC3757 version is its base version in everything gomatrixserverlib does (event format,
// IDs, redaction, signatures, canonical JSON, power level parsing, knocking, restricted joins,
// the create event check): it differs only in rule 8, which Allowed applies. So the registered
// value is a copy of the base version's gomatrixserverlib.RoomVersionImpl with its identifier
// and stability changed. Those two fields are unexported; they are set through reflect. A
// wrapper type that embeds the base version and overrides Version() would not do: the
// events it parses and builds are made by the embedded value and would report the base version
// from PDU.Version(), which Lattice compares with the room's version. The pinned
// gomatrixserverlib is fixed in go.sum; TestRegisteredVersions checks the result (events parsed
// and built in these versions report them), so a gomatrixserverlib update that renames the
// fields fails here at start-up rather than misbehaving.
func registerVersions() error {
	for v, base := range bases {
		impl, err := gomatrixserverlib.GetRoomVersion(base)
		if err != nil {
			return fmt.Errorf("msc3757: base room version %s: %w", base, err)
		}
		baseImpl, ok := impl.(gomatrixserverlib.RoomVersionImpl)
		if !ok {
			return fmt.Errorf("msc3757: base room version %s is a %T, not a RoomVersionImpl", base, impl)
		}
		copied := reflect.New(reflect.TypeOf(baseImpl)).Elem()
		copied.Set(reflect.ValueOf(baseImpl))
		if err := setUnexported(copied, "ver", reflect.ValueOf(v)); err != nil {
			return err
		}
		if err := setUnexported(copied, "stable", reflect.ValueOf(false)); err != nil {
			return err
		}
		out := copied.Interface().(gomatrixserverlib.RoomVersionImpl)
		if out.Version() != v || out.Stable() {
			return fmt.Errorf("msc3757: registering %s produced version %s (stable %v)", v, out.Version(), out.Stable())
		}
		gomatrixserverlib.SetRoomVersion(out)
	}
	return nil
}

// setUnexported sets the unexported field name of the addressable struct value s to val,
// checking the field's type first.
func setUnexported(s reflect.Value, name string, val reflect.Value) error {
	f := s.FieldByName(name)
	if !f.IsValid() {
		return fmt.Errorf("msc3757: gomatrixserverlib.RoomVersionImpl has no field %q", name)
	}
	if f.Type() != val.Type() {
		return fmt.Errorf("msc3757: gomatrixserverlib.RoomVersionImpl.%s is a %s, not a %s", name, f.Type(), val.Type())
	}
	reflect.NewAt(f.Type(), f.Addr().UnsafePointer()).Elem().Set(val)
	return nil
}
