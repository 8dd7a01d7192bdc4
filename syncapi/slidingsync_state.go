package syncapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
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
// lazy-loaded members. A union of configs that exclude (MSC4186 "Combining required_state")
// keeps the others apart in Others: a state event is returned if any of them asks for it.
type requiredState struct {
	Include     []stateSelector
	Exclude     []stateSelector
	LazyMembers bool
	Others      []requiredState // without Others of their own
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
// Without exclusions the include lists simply add up; a config that selects nothing adds
// nothing (and cancels no exclusion of the other); otherwise the configs stay apart.
func (r requiredState) merge(o requiredState) requiredState {
	lazy := r.LazyMembers || o.LazyMembers
	switch {
	case r.empty():
		o.LazyMembers = lazy
		return o
	case o.empty():
		r.LazyMembers = lazy
		return r
	case len(r.Exclude) == 0 && len(o.Exclude) == 0 && len(r.Others) == 0 && len(o.Others) == 0:
		return requiredState{Include: append(append([]stateSelector{}, r.Include...), o.Include...), LazyMembers: lazy}
	}
	out := requiredState{Include: r.Include, Exclude: r.Exclude, LazyMembers: lazy}
	out.Others = append(append([]requiredState{}, r.Others...), requiredState{Include: o.Include, Exclude: o.Exclude})
	out.Others = append(out.Others, o.Others...)
	return out
}

// empty reports whether the config selects no state event (lazy members aside).
func (r requiredState) empty() bool { return len(r.Include) == 0 && len(r.Others) == 0 }

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
	others := make([]string, 0, len(r.Others))
	for _, o := range r.Others {
		others = append(others, o.signature())
	}
	sort.Strings(others)
	for _, o := range others {
		b.WriteString("\x03" + o)
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
	for _, o := range r.Others {
		if o.matches(evType, stateKey, userID) {
			return true
		}
	}
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
	n := len(r.Include) + len(r.Exclude)
	for _, o := range r.Others {
		n += len(o.Include) + len(o.Exclude)
	}
	if n > maxRequiredState {
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
	others           []stateMatcher
}

// matcher returns the config indexed for userID.
func (r requiredState) matcher(userID string) stateMatcher {
	m := stateMatcher{include: newSelectorSet(r.Include, userID), exclude: newSelectorSet(r.Exclude, userID)}
	for _, o := range r.Others {
		m.others = append(m.others, o.matcher(userID))
	}
	return m
}

// matches is requiredState.matches, without the scan of the selectors.
func (m stateMatcher) matches(evType, stateKey string) bool {
	for _, o := range m.others {
		if o.matches(evType, stateKey) {
			return true
		}
	}
	return !m.exclude.has(evType, stateKey) && m.include.has(evType, stateKey)
}

// concreteKeys returns the exact (type, state_key) pairs the config asks for, or ok false
// when a wildcard means the whole state must be looked at.
func (r requiredState) concreteKeys(userID string) (keys []stateSelector, ok bool) {
	for _, o := range r.Others {
		ks, ok := o.concreteKeys(userID)
		if !ok {
			return nil, false
		}
		keys = append(keys, ks...)
	}
	for _, sel := range r.Include {
		if sel.Type == stateWildcard || sel.StateKey == stateWildcard {
			return nil, false
		}
		k := sel
		if k.StateKey == stateMe {
			k.StateKey = userID
		}
		if own := (requiredState{Include: r.Include, Exclude: r.Exclude}); own.matches(k.Type, k.StateKey, userID) && !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys, true
}
