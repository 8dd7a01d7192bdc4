package appservice

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/tidwall/gjson"

	"github.com/lattice-chat/lattice/storage"
)

// The encryption data of transactions (MSC2409's to-device messages, MSC3202's device lists
// and key counts), under the unstable names bridges read.
const (
	keyToDevice         = "de.sorunome.msc2409.to_device"
	keyToDeviceOrg      = "org.matrix.msc2409.to_device"
	keyDeviceLists      = "org.matrix.msc3202.device_lists"
	keyOTKCount         = "org.matrix.msc3202.device_one_time_keys_count"
	keyOTKCountOld      = "org.matrix.msc3202.device_one_time_key_counts" // Synapse before 1.73
	keyFallbackKeyTypes = "org.matrix.msc3202.device_unused_fallback_key_types"
	// e2eeBatch bounds the to-device messages and device list changes read at once.
	e2eeBatch = 100
)

// wantsToDevice reports whether the service is sent its users' to-device messages: it asked
// for ephemeral data (MSC2409) or for encryption (MSC3202).
func (s *Service) wantsToDevice() bool { return s.MSC3202 || s.Ephemeral() }

// e2eeData is what one transaction carries of encryption data, and the stream positions it
// reaches.
type e2eeData struct {
	toDevice      []map[string]any
	changed, left []string
	otk           map[string]map[string]map[string]int
	fallback      map[string]map[string][]string
	from, to      storage.AppServiceStreams
}

func (d *e2eeData) empty() bool {
	return d == nil || (len(d.toDevice) == 0 && len(d.changed) == 0 && len(d.left) == 0 && len(d.otk) == 0)
}

// e2ee returns the encryption data of the next transaction: the to-device messages sent to
// the service's users' devices and, with MSC3202, the device list changes of the users
// sharing a room with its users (and of its users), the users who started or stopped sharing
// one (from the membership events of picked), and the key counts of the devices of its users
// that received a to-device message or whose devices changed. It reads the streams only
// when they moved (dirty); nil when there is nothing to send or to move.
func (snd *sender) e2ee(ctx context.Context, dirty bool, picked []roomEvent) (*e2eeData, error) {
	svc := snd.svc
	if !svc.wantsToDevice() {
		return nil, nil
	}
	d := &e2eeData{}
	targets := map[string][]string{} // user -> devices whose key counts are sent
	changed := map[string]bool{}
	left := map[string]bool{}
	shares := map[string]bool{} // user -> shares a room with a user of the service
	if dirty {
		var err error
		if d.from, err = snd.s.db.AppServiceStreamPositions(ctx, svc.ID); err != nil {
			return nil, err
		}
		msgs, upTo, err := snd.s.db.ToDeviceMessagesAfter(ctx, d.from.ToDevice, e2eeBatch)
		if err != nil {
			return nil, err
		}
		d.to.ToDevice = upTo
		for _, m := range msgs {
			if !snd.ownsLocal(m.UserID) {
				continue
			}
			d.toDevice = append(d.toDevice, map[string]any{
				"type": m.Type, "sender": m.Sender, "content": json.RawMessage(m.Content),
				"to_user_id": m.UserID, "to_device_id": m.DeviceID,
			})
			if !slices.Contains(targets[m.UserID], m.DeviceID) {
				targets[m.UserID] = append(targets[m.UserID], m.DeviceID)
			}
		}
		d.to.DeviceLists = d.from.DeviceLists
		if svc.MSC3202 {
			users, pos, err := snd.s.db.DeviceListChangesAfter(ctx, d.from.DeviceLists, e2eeBatch)
			if err != nil {
				return nil, err
			}
			d.to.DeviceLists = pos
			for _, u := range users {
				ok := snd.ownsLocal(u)
				if !ok {
					if ok, err = snd.sharesRoom(ctx, shares, u); err != nil {
						return nil, err
					}
				}
				if ok {
					changed[u] = true
				}
			}
		}
		if d.to.ToDevice > d.from.ToDevice || d.to.DeviceLists > d.from.DeviceLists {
			snd.e2eeDirty.Store(true) // maybe more: read again until nothing moves
		}
	}
	if svc.MSC3202 {
		if err := snd.membershipChanges(ctx, picked, shares, changed, left); err != nil {
			return nil, err
		}
		for u := range changed {
			if snd.ownsLocal(u) {
				devs, err := snd.s.db.Devices(ctx, u)
				if err != nil {
					return nil, err
				}
				for _, dev := range devs {
					if !slices.Contains(targets[u], dev.DeviceID) {
						targets[u] = append(targets[u], dev.DeviceID)
					}
				}
			}
		}
		d.changed, d.left = sortedSet(changed), sortedSet(left)
		for u, devs := range targets {
			for _, dev := range devs {
				counts, fallback, err := snd.s.db.DeviceKeyCounts(ctx, u, dev)
				if err != nil {
					return nil, err
				}
				if d.otk == nil {
					d.otk, d.fallback = map[string]map[string]map[string]int{}, map[string]map[string][]string{}
				}
				if d.otk[u] == nil {
					d.otk[u], d.fallback[u] = map[string]map[string]int{}, map[string][]string{}
				}
				d.otk[u][dev] = map[string]int{"signed_curve25519": 0}
				for alg, n := range counts {
					d.otk[u][dev][alg] = n
				}
				d.fallback[u][dev] = append([]string{}, fallback...)
			}
		}
	}
	if d.empty() && d.from == d.to {
		return nil, nil
	}
	return d, nil
}

// sharesRoom reports whether userID is joined to a room where a user of the service is
// joined, remembering the answer in cache.
func (snd *sender) sharesRoom(ctx context.Context, cache map[string]bool, userID string) (bool, error) {
	if v, ok := cache[userID]; ok {
		return v, nil
	}
	users, err := snd.s.db.UsersSharingRooms(ctx, userID)
	if err != nil {
		return false, err
	}
	v := slices.ContainsFunc(users, snd.ownsLocal)
	cache[userID] = v
	return v, nil
}

// membershipChanges adds to changed the users who started sharing a room with the service's
// users through the member events of evs (a join beside them, or one of them joining), and to
// left those who no longer share any after a leave or ban.
func (snd *sender) membershipChanges(ctx context.Context, evs []roomEvent, shares, changed, left map[string]bool) error {
	for _, re := range evs {
		if re.ev.Type != "m.room.member" {
			continue
		}
		target := gjson.GetBytes(re.ev.JSON, "state_key").String()
		membership := gjson.GetBytes(re.ev.JSON, "content.membership").String()
		var affected []string
		if snd.ownsLocal(target) {
			// One of the service's users joined or left: every member may have changed.
			members, err := snd.s.db.RoomMembers(ctx, re.ev.RoomNID, "join")
			if err != nil {
				return err
			}
			for _, m := range members {
				if !snd.ownsLocal(m.UserID) {
					affected = append(affected, m.UserID)
				}
			}
		} else {
			affected = []string{target}
		}
		for _, u := range affected {
			delete(shares, u) // the membership changed since it was cached
			ok, err := snd.sharesRoom(ctx, shares, u)
			if err != nil {
				return err
			}
			switch {
			case ok && membership == "join":
				changed[u] = true
				delete(left, u)
			case !ok && (membership == "leave" || membership == "ban"):
				left[u] = true
				delete(changed, u)
			}
		}
	}
	return nil
}

func sortedSet(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// addE2EE puts the encryption data into a transaction body.
func addE2EE(body map[string]any, d *e2eeData) {
	if d == nil {
		return
	}
	if len(d.toDevice) > 0 {
		body[keyToDevice] = d.toDevice
		body[keyToDeviceOrg] = d.toDevice
	}
	if len(d.changed) > 0 || len(d.left) > 0 {
		body[keyDeviceLists] = map[string]any{"changed": d.changed, "left": d.left}
	}
	if len(d.otk) > 0 {
		body[keyOTKCount] = d.otk
		body[keyOTKCountOld] = d.otk
		body[keyFallbackKeyTypes] = d.fallback
	}
}
