package syncapi

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// maxToDeviceLimit caps the to-device extension's limit.
const maxToDeviceLimit = 1000

// slidingExtensionsConfig is the request's extensions. An extension left out of a request
// keeps the connection's previous config for it (clients may send a config only when it
// changes).
type slidingExtensionsConfig struct {
	ToDevice    *toDeviceConfig `json:"to_device"`
	E2EE        *extConfig      `json:"e2ee"`
	AccountData *extConfig      `json:"account_data"`
	Receipts    *extConfig      `json:"receipts"`
	Typing      *extConfig      `json:"typing"`
	// MSC4308's thread subscriptions, under its unstable name and the name it will have.
	ThreadSubscriptions   *threadSubsConfig `json:"io.element.msc4308.thread_subscriptions"`
	ThreadSubscriptionsV1 *threadSubsConfig `json:"thread_subscriptions"`
	// MSC4480's sticky events (MSC4354), under its unstable name (sticky.go).
	StickyEvents *stickyExtConfig `json:"org.matrix.msc4354.sticky_events"`
}

// extConfig is an extension's config: enabled, and for the room-scoped ones the lists and
// rooms it applies to (absent: all lists, all subscriptions; "*" in rooms: all subscriptions).
type extConfig struct {
	Enabled *bool     `json:"enabled"`
	Lists   *[]string `json:"lists"`
	Rooms   *[]string `json:"rooms"`
}

// toDeviceConfig is the to-device extension's config (MSC3885).
type toDeviceConfig struct {
	Enabled *bool  `json:"enabled"`
	Limit   *int   `json:"limit"`
	Since   string `json:"since"`
}

func (c *extConfig) on() bool { return c != nil && c.Enabled != nil && *c.Enabled }

// sticky returns the config of this request: cur where given (its enabled flag defaulting to
// the previous one), else prev.
func sticky(cur, prev *extConfig) *extConfig {
	if cur == nil {
		return prev
	}
	if cur.Enabled == nil && prev != nil {
		c := *cur
		c.Enabled = prev.Enabled
		return &c
	}
	return cur
}

// slidingExtensions is the response's extensions.
type slidingExtensions struct {
	ToDevice    *toDeviceResult    `json:"to_device,omitempty"`
	E2EE        *e2eeResult        `json:"e2ee,omitempty"`
	AccountData *accountDataResult `json:"account_data,omitempty"`
	Receipts    *roomEDUs          `json:"receipts,omitempty"`
	Typing      *roomEDUs          `json:"typing,omitempty"`
	// Thread subscription changes, under the name the request used (threadsubs.go).
	ThreadSubscriptions   *threadSubsResult `json:"io.element.msc4308.thread_subscriptions,omitempty"`
	ThreadSubscriptionsV1 *threadSubsResult `json:"thread_subscriptions,omitempty"`
	StickyEvents          *stickyExtResult  `json:"org.matrix.msc4354.sticky_events,omitempty"`
}

type toDeviceResult struct {
	NextBatch string `json:"next_batch"`
	Events    []any  `json:"events"`
}

type e2eeResult struct {
	DeviceLists                  deviceLists    `json:"device_lists"`
	DeviceOneTimeKeysCount       map[string]int `json:"device_one_time_keys_count"`
	DeviceUnusedFallbackKeyTypes []string       `json:"device_unused_fallback_key_types"`
}

type accountDataResult struct {
	Global []any            `json:"global"`
	Rooms  map[string][]any `json:"rooms"`
}

// roomEDUs is the receipts or typing extension's result: one event per room.
type roomEDUs struct {
	Rooms map[string]any `json:"rooms"`
}

// empty reports whether the extensions carry nothing new. The key counts are always there
// and do not count.
func (e *slidingExtensions) empty() bool {
	return (e.ToDevice == nil || len(e.ToDevice.Events) == 0) &&
		(e.E2EE == nil || len(e.E2EE.DeviceLists.Changed)+len(e.E2EE.DeviceLists.Left) == 0) &&
		(e.AccountData == nil || len(e.AccountData.Global)+len(e.AccountData.Rooms) == 0) &&
		(e.Receipts == nil || len(e.Receipts.Rooms) == 0) &&
		(e.Typing == nil || len(e.Typing.Rooms) == 0) &&
		(e.ThreadSubscriptions == nil || e.ThreadSubscriptions.empty()) &&
		(e.ThreadSubscriptionsV1 == nil || e.ThreadSubscriptionsV1.empty()) &&
		(e.StickyEvents == nil || len(e.StickyEvents.Rooms) == 0)
}

// slidingExtensions fills the extensions the request (or the connection) enables.
func (s *Server) slidingExtensions(ctx context.Context, viewer roomserver.Viewer, req slidingRequest, base, next *connState, sel *roomSelection, resp *slidingResponse, to Token) error {
	cfg := slidingExtensionsConfig{}
	if req.Extensions != nil {
		cfg = *req.Extensions
	}
	cfg.E2EE = sticky(cfg.E2EE, base.ext.E2EE)
	cfg.AccountData = sticky(cfg.AccountData, base.ext.AccountData)
	cfg.Receipts = sticky(cfg.Receipts, base.ext.Receipts)
	cfg.Typing = sticky(cfg.Typing, base.ext.Typing)
	cfg.ThreadSubscriptions = cfg.ThreadSubscriptions.sticky(base.ext.ThreadSubscriptions)
	cfg.ThreadSubscriptionsV1 = cfg.ThreadSubscriptionsV1.sticky(base.ext.ThreadSubscriptionsV1)
	if cfg.ToDevice == nil && base.ext.ToDevice != nil {
		cfg.ToDevice = &toDeviceConfig{Enabled: base.ext.ToDevice.Enabled, Limit: base.ext.ToDevice.Limit}
	} else if cfg.ToDevice != nil && cfg.ToDevice.Enabled == nil && base.ext.ToDevice != nil {
		cfg.ToDevice.Enabled = base.ext.ToDevice.Enabled
	}
	if cfg.StickyEvents == nil && base.ext.StickyEvents != nil {
		cfg.StickyEvents = &stickyExtConfig{Enabled: base.ext.StickyEvents.Enabled, Limit: base.ext.StickyEvents.Limit}
	} else if cfg.StickyEvents != nil && cfg.StickyEvents.Enabled == nil && base.ext.StickyEvents != nil {
		cfg.StickyEvents.Enabled = base.ext.StickyEvents.Enabled
	}
	next.ext = cfg
	since := base.to // zero for a new connection: everything
	if c := cfg.StickyEvents; c != nil && c.Enabled != nil && *c.Enabled {
		if err := s.slidingSticky(ctx, viewer, c, base, sel, resp, to); err != nil {
			return err
		}
	}
	if cfg.ToDevice != nil && cfg.ToDevice.Enabled != nil && *cfg.ToDevice.Enabled {
		if err := s.slidingToDevice(ctx, viewer, cfg.ToDevice, base, next, resp, to); err != nil {
			return err
		}
	}
	if cfg.E2EE.on() {
		if err := s.slidingE2EE(ctx, viewer, base, resp, since, to); err != nil {
			return err
		}
	}
	if cfg.AccountData.on() {
		if err := s.slidingAccountData(ctx, viewer, extScope(cfg.AccountData, sel), base, next, resp, since, to); err != nil {
			return err
		}
	}
	for _, ts := range []struct {
		cfg *threadSubsConfig
		out **threadSubsResult
	}{{cfg.ThreadSubscriptions, &resp.Extensions.ThreadSubscriptions}, {cfg.ThreadSubscriptionsV1, &resp.Extensions.ThreadSubscriptionsV1}} {
		if ts.cfg.on() {
			res, err := s.slidingThreadSubscriptions(ctx, viewer.UserID, ts.cfg, since.AccountData, to.AccountData)
			if err != nil {
				return err
			}
			*ts.out = res
		}
	}
	if cfg.Receipts.on() || cfg.Typing.on() {
		return s.slidingEphemeral(ctx, viewer, cfg, sel, base, next, resp, since, to)
	}
	return nil
}

// extFrom returns the position of one stream up to which the connection has a room's
// extension data (receipts, room account data, typing), from what sentRoom records: 0 for a
// room sent whole in this response (it gets everything), else where its delivery stopped; a
// room that was out of the extension's scope for a while catches up from there.
func extFrom(base *connState, resp *slidingResponse, roomID string, pos func(sentRoom) int64) int64 {
	if room := resp.Rooms[roomID]; room != nil && room.Initial {
		return 0
	}
	prev, ok := base.rooms[roomID]
	if !ok {
		return 0
	}
	return pos(prev)
}

// markSent records in the connection's next state that a room's extension data was
// delivered (up to the response's positions).
func markSent(next *connState, roomID string, mark func(*sentRoom)) {
	if r, ok := next.rooms[roomID]; ok {
		mark(&r)
		next.rooms[roomID] = r
	}
}

// extScope returns the rooms an extension applies to: those in the ranges of its lists and
// those of its room subscriptions.
func extScope(c *extConfig, sel *roomSelection) map[string]bool {
	out := map[string]bool{}
	for name, rooms := range sel.listRooms {
		if c.Lists != nil && !contains(*c.Lists, name) {
			continue
		}
		for _, r := range rooms {
			out[r] = true
		}
	}
	for r := range sel.subbed {
		if c.Rooms == nil || contains(*c.Rooms, "*") || contains(*c.Rooms, r) {
			out[r] = true
		}
	}
	return out
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// slidingToDevice fills the to-device extension (MSC3885): the messages after since (the
// next_batch of the previous response), up to limit. Messages up to since are acknowledged
// and deleted, as /sync deletes those up to its since-token.
func (s *Server) slidingToDevice(ctx context.Context, viewer roomserver.Viewer, cfg *toDeviceConfig, base, next *connState, resp *slidingResponse, to Token) error {
	userID, deviceID := viewer.UserID, viewer.DeviceID
	since := base.toDevice
	if cfg.Since != "" {
		v, err := strconv.ParseInt(cfg.Since, 10, 64)
		if err != nil || v < 0 {
			return spec.InvalidParam("extensions.to_device.since is not a valid token")
		}
		since = v
	}
	limit := toDeviceLimit
	if cfg.Limit != nil && *cfg.Limit > 0 {
		limit = min(*cfg.Limit, maxToDeviceLimit)
	}
	if since > 0 {
		acked, err := s.db.HasToDeviceMessagesUpTo(ctx, userID, deviceID, since)
		if err != nil {
			return err
		}
		if acked {
			if err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
				return tx.DeleteToDeviceMessages(ctx, userID, deviceID, since)
			}); err != nil {
				return err
			}
		}
	}
	result := &toDeviceResult{Events: []any{}}
	nextBatch := max(since, to.ToDevice)
	if to.ToDevice > since {
		msgs, err := s.db.ToDeviceMessages(ctx, userID, deviceID, since, to.ToDevice, limit)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			result.Events = append(result.Events, map[string]any{
				"type": m.Type, "sender": m.Sender, "content": json.RawMessage(m.Content),
			})
		}
		if len(msgs) == limit {
			nextBatch = msgs[len(msgs)-1].StreamPos
		}
	}
	result.NextBatch = strconv.FormatInt(nextBatch, 10)
	next.toDevice = nextBatch
	resp.Extensions.ToDevice = result
	return nil
}

// slidingE2EE fills the e2ee extension (MSC3884): the device list changes since the
// connection's last response (none on a new connection, as /sync's initial sync), and the
// device's one-time and fallback key counts.
func (s *Server) slidingE2EE(ctx context.Context, viewer roomserver.Viewer, base *connState, resp *slidingResponse, since, to Token) error {
	res := &e2eeResult{
		DeviceLists:            deviceLists{Changed: []string{}, Left: []string{}},
		DeviceOneTimeKeysCount: map[string]int{"signed_curve25519": 0},
	}
	if base.pos != 0 && (to.DeviceLists > since.DeviceLists || to.PDU > since.PDU) {
		changed, left, err := s.db.DeviceListChanges(ctx, viewer.UserID, since.PDU, to.PDU, since.DeviceLists, to.DeviceLists)
		if err != nil {
			return err
		}
		res.DeviceLists.Changed = append(res.DeviceLists.Changed, changed...)
		res.DeviceLists.Left = append(res.DeviceLists.Left, left...)
	}
	counts, unused, err := s.db.DeviceKeyCounts(ctx, viewer.UserID, viewer.DeviceID)
	if err != nil {
		return err
	}
	for alg, n := range counts {
		res.DeviceOneTimeKeysCount[alg] = n
	}
	res.DeviceUnusedFallbackKeyTypes = unused
	if res.DeviceUnusedFallbackKeyTypes == nil {
		res.DeviceUnusedFallbackKeyTypes = []string{}
	}
	resp.Extensions.E2EE = res
	return nil
}

// slidingAccountData fills the account data extension: global account data changed since
// the connection's last response, and the room account data of the rooms in scope changed
// since the connection last had each room's (all of it for a room sent whole, or new to
// the extension; what changed while the room was out of scope for one coming back).
func (s *Server) slidingAccountData(ctx context.Context, viewer roomserver.Viewer, scope map[string]bool, base, next *connState, resp *slidingResponse, since, to Token) error {
	res := &accountDataResult{Global: []any{}, Rooms: map[string][]any{}}
	add := func(e storage.AccountData) {
		ev := map[string]any{"type": e.Type, "content": json.RawMessage(e.Content)}
		if e.RoomID == "" {
			res.Global = append(res.Global, ev)
		} else {
			res.Rooms[e.RoomID] = append(res.Rooms[e.RoomID], ev)
		}
	}
	// The rooms whose delivery is at the connection's position take the changes of one
	// query; the others are read room by room.
	behind := map[string]int64{}
	for roomID := range scope {
		if from := extFrom(base, resp, roomID, func(r sentRoom) int64 { return r.accountDataTo }); from != since.AccountData {
			behind[roomID] = from
		}
	}
	if to.AccountData > since.AccountData {
		entries, err := s.db.AccountDataSince(ctx, viewer.UserID, since.AccountData, to.AccountData)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if _, ok := behind[e.RoomID]; e.RoomID == "" || scope[e.RoomID] && !ok {
				add(e)
			}
		}
	}
	if base.pos == 0 { // a new connection: all the global account data is above
		if ev := defaultPushRules(viewer.UserID, res.Global); ev != nil {
			res.Global = append(res.Global, ev)
		}
	}
	for roomID, from := range behind {
		if from >= to.AccountData {
			continue
		}
		entries, err := s.db.RoomAccountDataSince(ctx, viewer.UserID, roomID, from, to.AccountData)
		if err != nil {
			return err
		}
		for _, e := range entries {
			add(e)
		}
	}
	for roomID := range scope {
		markSent(next, roomID, func(r *sentRoom) { r.accountDataTo = to.AccountData })
	}
	resp.Extensions.AccountData = res
	return nil
}

// slidingEphemeral fills the receipts and typing extensions for the joined rooms in their
// scopes: the changes since the connection last had each room's (for rooms sent whole in
// this response everything: all receipts, the current typers; for a room coming back into
// scope, the receipts that changed meanwhile and its current typers).
func (s *Server) slidingEphemeral(ctx context.Context, viewer roomserver.Viewer, cfg slidingExtensionsConfig, sel *roomSelection, base, next *connState, resp *slidingResponse, since, to Token) error {
	req := syncRequest{viewer: viewer, since: &since}
	initialReq := syncRequest{viewer: viewer}
	joined := map[string]*roomCandidate{}
	for _, c := range sel.rooms {
		if c.m.Membership == spec.Join {
			joined[c.m.RoomID] = c
		}
	}
	if cfg.Receipts.on() {
		res := &roomEDUs{Rooms: map[string]any{}}
		var changed map[int64]receiptContent // the receipts of all the user's rooms in (since, to]
		for roomID := range extScope(cfg.Receipts, sel) {
			c := joined[roomID]
			if c == nil {
				continue
			}
			markSent(next, roomID, func(r *sentRoom) { r.receiptsTo = to.Receipts })
			from := extFrom(base, resp, roomID, func(r sentRoom) int64 { return r.receiptsTo })
			if from >= to.Receipts {
				continue
			}
			var content receiptContent
			if from == since.Receipts {
				if changed == nil {
					var err error
					if changed, err = s.receiptEvents(ctx, initialReq, since, to); err != nil {
						return err
					}
					if changed == nil {
						changed = map[int64]receiptContent{}
					}
					s.countReceiptRooms(len(changed))
				}
				content = changed[c.m.RoomNID]
			} else {
				// Sent whole, or back in scope: this room's receipts only.
				rs, err := s.db.RoomReceiptsSince(ctx, viewer.UserID, c.m.RoomNID, from, to.Receipts)
				if err != nil {
					return err
				}
				s.countReceiptRooms(1)
				content = receiptsContent(viewer, rs)
			}
			if len(content) > 0 {
				res.Rooms[roomID] = map[string]any{"type": "m.receipt", "content": content}
			}
		}
		resp.Extensions.Receipts = res
	}
	if cfg.Typing.on() {
		res := &roomEDUs{Rooms: map[string]any{}}
		for roomID := range extScope(cfg.Typing, sel) {
			if joined[roomID] == nil {
				continue
			}
			markSent(next, roomID, func(r *sentRoom) { r.typingTo = to.Typing })
			r, from := req, since
			if room := resp.Rooms[roomID]; room != nil && room.Initial || base.pos == 0 {
				r, from = initialReq, Token{}
			} else if prev := base.rooms[roomID]; prev.typingTo != since.Typing {
				// Back in scope: its current typers, when they changed while it was out.
				from = Token{Typing: prev.typingTo}
			}
			if ev, ok := s.typingEvent(r, roomID, from, to); ok {
				res.Rooms[roomID] = ev
			}
		}
		resp.Extensions.Typing = res
	}
	return nil
}

func (s *Server) countReceiptRooms(n int) {
	s.sliding.mu.Lock()
	s.sliding.receiptRooms += int64(n)
	s.sliding.mu.Unlock()
}

// receiptsContent is the m.receipt content of one room's receipts, without those of users
// the viewer ignores.
func receiptsContent(viewer roomserver.Viewer, rs []storage.Receipt) receiptContent {
	out := receiptContent{}
	for _, r := range rs {
		if viewer.Ignored[r.UserID] {
			continue
		}
		byType := out[r.EventID]
		if byType == nil {
			byType = map[string]map[string]receiptInfo{}
			out[r.EventID] = byType
		}
		byUser := byType[r.Type]
		if byUser == nil {
			byUser = map[string]receiptInfo{}
			byType[r.Type] = byUser
		}
		byUser[r.UserID] = receiptInfo{TS: r.TS, ThreadID: r.ThreadID}
	}
	return out
}
