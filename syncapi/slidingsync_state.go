package syncapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"sort"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// The special values of a required_state entry (MSC4186, and the array form matrix-rust-sdk
// sends): "*" matches any type or state key, "$ME" stands for the syncing user's ID, and
// ("m.room.member", "$LAZY") asks for the members the returned timeline needs.
const (
	stateWildcard = "*"
	stateMe       = "$ME"
	stateLazy     = "$LAZY"
)

// stateSelector is one (type, state_key) pair of a required_state request; "*" in either
// field is a wildcard.
type stateSelector struct {
	Type     string
	StateKey string
}

// requiredState is what state a room config asks for: the include and exclude selectors, and
// lazy-loaded members.
type requiredState struct {
	Include     []stateSelector
	Exclude     []stateSelector
	LazyMembers bool
}

// UnmarshalJSON accepts both forms clients send: the array of [type, state_key] pairs
// (matrix-rust-sdk, Synapse) and the object {include, exclude, lazy_members} of the MSC's
// latest text, where an omitted type or state_key matches everything.
func (r *requiredState) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	*r = requiredState{}
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	if b[0] == '[' {
		var pairs [][]string
		if err := json.Unmarshal(b, &pairs); err != nil {
			return errors.New("required_state must be a list of [type, state_key] pairs")
		}
		for _, p := range pairs {
			if len(p) != 2 {
				return errors.New("required_state entries must be [type, state_key] pairs")
			}
			r.add(stateSelector{Type: p[0], StateKey: p[1]})
		}
		return nil
	}
	var obj struct {
		Include     []selectorJSON `json:"include"`
		Exclude     []selectorJSON `json:"exclude"`
		LazyMembers bool           `json:"lazy_members"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return errors.New("required_state must be a list of pairs or an object")
	}
	for _, e := range obj.Include {
		r.add(e.selector())
	}
	for _, e := range obj.Exclude {
		r.Exclude = append(r.Exclude, e.selector())
	}
	r.LazyMembers = r.LazyMembers || obj.LazyMembers
	return nil
}

// selectorJSON is a RequiredStateElement of the object form.
type selectorJSON struct {
	Type     *string `json:"type"`
	StateKey *string `json:"state_key"`
}

func (e selectorJSON) selector() stateSelector {
	sel := stateSelector{Type: stateWildcard, StateKey: stateWildcard}
	if e.Type != nil {
		sel.Type = *e.Type
	}
	if e.StateKey != nil {
		sel.StateKey = *e.StateKey
	}
	return sel
}

func (r *requiredState) add(sel stateSelector) {
	if sel.Type == spec.MRoomMember && sel.StateKey == stateLazy {
		r.LazyMembers = true
		return
	}
	r.Include = append(r.Include, sel)
}

// merge returns the union of two required_state configs (MSC4186 "Combining room configs").
func (r requiredState) merge(o requiredState) requiredState {
	out := requiredState{LazyMembers: r.LazyMembers || o.LazyMembers}
	out.Include = append(append(out.Include, r.Include...), o.Include...)
	// An exclusion stays only where both configs exclude: the union returns what either would.
	for _, e := range r.Exclude {
		for _, f := range o.Exclude {
			if e == f {
				out.Exclude = append(out.Exclude, e)
			}
		}
	}
	return out
}

// signature is a canonical string of the config, to notice when a room's config changes.
func (r requiredState) signature() string {
	enc := func(sels []stateSelector) []string {
		out := make([]string, 0, len(sels))
		for _, s := range sels {
			out = append(out, s.Type+"\x00"+s.StateKey)
		}
		sort.Strings(out)
		return out
	}
	var b strings.Builder
	b.WriteString(strings.Join(enc(r.Include), "\x01"))
	b.WriteString("\x02")
	b.WriteString(strings.Join(enc(r.Exclude), "\x01"))
	if r.LazyMembers {
		b.WriteString("\x02lazy")
	}
	return b.String()
}

func (sel stateSelector) matches(evType, stateKey, userID string) bool {
	if sel.Type != stateWildcard && sel.Type != evType {
		return false
	}
	switch sel.StateKey {
	case stateWildcard:
		return true
	case stateMe:
		return stateKey == userID
	}
	return sel.StateKey == stateKey
}

// matches reports whether the config asks for the state event (evType, stateKey). Lazy
// members are not matched here: they depend on the timeline.
func (r requiredState) matches(evType, stateKey, userID string) bool {
	for _, e := range r.Exclude {
		if e.matches(evType, stateKey, userID) {
			return false
		}
	}
	for _, sel := range r.Include {
		if sel.matches(evType, stateKey, userID) {
			return true
		}
	}
	return false
}

// maxRequiredState bounds the include and exclude selectors of one list or subscription (the
// MSC sets no limit; Element X sends a handful). More is refused with M_INVALID_PARAM.
const maxRequiredState = 100

// check refuses a config with more selectors than maxRequiredState.
func (r requiredState) check() error {
	if len(r.Include)+len(r.Exclude) > maxRequiredState {
		return slidingError("required_state has more than 100 entries")
	}
	return nil
}

// selectorSet is a set of selectors indexed for matching in constant time, with $ME replaced
// by the user's ID.
type selectorSet struct {
	all   bool                   // ("*", "*")
	types map[string]bool        // (type, "*")
	keys  map[string]bool        // ("*", state_key)
	pairs map[stateSelector]bool // (type, state_key)
}

func newSelectorSet(sels []stateSelector, userID string) selectorSet {
	set := selectorSet{types: map[string]bool{}, keys: map[string]bool{}, pairs: map[stateSelector]bool{}}
	for _, sel := range sels {
		if sel.StateKey == stateMe {
			sel.StateKey = userID
		}
		switch {
		case sel.Type == stateWildcard && sel.StateKey == stateWildcard:
			set.all = true
		case sel.StateKey == stateWildcard:
			set.types[sel.Type] = true
		case sel.Type == stateWildcard:
			set.keys[sel.StateKey] = true
		default:
			set.pairs[sel] = true
		}
	}
	return set
}

func (set selectorSet) has(evType, stateKey string) bool {
	return set.all || set.types[evType] || set.keys[stateKey] || set.pairs[stateSelector{Type: evType, StateKey: stateKey}]
}

// stateMatcher is a requiredState indexed for matching every key of a room's state.
type stateMatcher struct {
	include, exclude selectorSet
}

// matcher returns the config indexed for userID.
func (r requiredState) matcher(userID string) stateMatcher {
	return stateMatcher{include: newSelectorSet(r.Include, userID), exclude: newSelectorSet(r.Exclude, userID)}
}

// matches is requiredState.matches, without the scan of the selectors.
func (m stateMatcher) matches(evType, stateKey string) bool {
	return !m.exclude.has(evType, stateKey) && m.include.has(evType, stateKey)
}

// concreteKeys returns the exact (type, state_key) pairs the config asks for, or ok false
// when a wildcard means the whole state must be looked at.
func (r requiredState) concreteKeys(userID string) (keys []stateSelector, ok bool) {
	for _, sel := range r.Include {
		if sel.Type == stateWildcard || sel.StateKey == stateWildcard {
			return nil, false
		}
		k := sel
		if k.StateKey == stateMe {
			k.StateKey = userID
		}
		if r.matches(k.Type, k.StateKey, userID) {
			keys = append(keys, k)
		}
	}
	return keys, true
}
