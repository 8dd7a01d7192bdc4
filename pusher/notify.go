package pusher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/tidwall/gjson"

	"github.com/lattice-chat/lattice/internal/netguard"
	"github.com/lattice-chat/lattice/storage"
)

// notification is the body of POST /_matrix/push/v1/notify (push gateway API).
type notification struct {
	EventID           string          `json:"event_id,omitempty"`
	RoomID            string          `json:"room_id,omitempty"`
	Type              string          `json:"type,omitempty"`
	Sender            string          `json:"sender,omitempty"`
	SenderDisplayName string          `json:"sender_display_name,omitempty"`
	RoomName          string          `json:"room_name,omitempty"`
	UserIsTarget      bool            `json:"user_is_target,omitempty"`
	Prio              string          `json:"prio"`
	Content           json.RawMessage `json:"content,omitempty"`
	Counts            counts          `json:"counts"`
	Devices           []device        `json:"devices"`
}

type counts struct {
	Unread int `json:"unread"`
}

type device struct {
	AppID     string         `json:"app_id"`
	PushKey   string         `json:"pushkey"`
	PushKeyTS int64          `json:"pushkey_ts,omitempty"`
	Data      map[string]any `json:"data,omitempty"`
	Tweaks    map[string]any `json:"tweaks,omitempty"`
}

// gateway is one request to make: the pushers of a user sharing a URL and a format.
type gateway struct {
	url, format string
	devices     []device
	pushers     []storage.Pusher
}

// deliver sends one notification to every HTTP pusher of its user, one request per
// gateway URL and format, and removes the pushers whose pushkeys a gateway rejects.
func (p *Pusher) deliver(ctx context.Context, a storage.PushAction) {
	pushers, err := p.db.Pushers(ctx, a.UserID)
	if err != nil || len(pushers) == 0 {
		return
	}
	full, err := p.notification(ctx, a)
	if err != nil {
		p.log.Error("build push notification", "user_id", a.UserID, "err", err)
		return
	}
	tweaks := tweaksOf(a.Actions)
	var gws []*gateway
	for _, ps := range pushers {
		var data map[string]any
		if ps.Kind != "http" || json.Unmarshal([]byte(ps.Data), &data) != nil {
			continue
		}
		url, _ := data["url"].(string)
		format, _ := data["format"].(string)
		delete(data, "url") // every key but url is forwarded
		var gw *gateway
		for _, g := range gws {
			if g.url == url && g.format == format {
				gw = g
			}
		}
		if gw == nil {
			gw = &gateway{url: url, format: format}
			gws = append(gws, gw)
		}
		gw.devices = append(gw.devices, device{AppID: ps.AppID, PushKey: ps.PushKey, PushKeyTS: ps.PushKeyTS, Data: data, Tweaks: tweaks})
		gw.pushers = append(gw.pushers, ps)
	}
	for _, gw := range gws {
		n := full
		if gw.format == "event_id_only" {
			n = notification{EventID: full.EventID, RoomID: full.RoomID, Prio: full.Prio, Counts: full.Counts}
		}
		n.Devices = gw.devices
		rejected, err := p.post(ctx, gw.url, n)
		switch {
		case err != nil:
			p.pushFailed.Add(1)
		case len(rejected) > 0:
			p.pushRejected.Add(1)
		default:
			p.pushed.Add(1)
		}
		if err != nil {
			p.log.Warn("push gateway", "destination", gw.url, "user_id", a.UserID, "event_id", full.EventID, "err", err)
			continue
		}
		p.removeRejected(ctx, gw.pushers, rejected)
	}
}

// notification builds the full notification of a push action for its user.
func (p *Pusher) notification(ctx context.Context, a storage.PushAction) (notification, error) {
	evs, err := p.db.EventsByNID(ctx, []int64{a.EventNID})
	if err != nil {
		return notification{}, err
	}
	if len(evs) == 0 {
		return notification{}, fmt.Errorf("event %d: %w", a.EventNID, storage.ErrNotFound)
	}
	ev := evs[0]
	roomID, err := p.db.RoomIDByNID(ctx, a.RoomNID)
	if err != nil {
		return notification{}, err
	}
	unread, err := p.db.UnreadTotal(ctx, a.UserID)
	if err != nil {
		return notification{}, err
	}
	n := notification{
		EventID: ev.EventID, RoomID: roomID, Type: ev.Type, Sender: ev.Sender,
		Content:           json.RawMessage(gjson.GetBytes(ev.JSON, "content").Raw),
		SenderDisplayName: p.stateField(ctx, a.RoomNID, storage.StateKey{Type: "m.room.member", StateKey: ev.Sender}, "displayname"),
		RoomName:          p.stateField(ctx, a.RoomNID, storage.StateKey{Type: "m.room.name"}, "name"),
		UserIsTarget:      ev.Type == "m.room.member" && gjson.GetBytes(ev.JSON, "state_key").Str == a.UserID,
		Counts:            counts{Unread: unread},
		Prio:              "low",
	}
	// As Synapse does: a notification that makes a sound or highlights, or an encrypted
	// event (which may be either), is worth waking a device for.
	if t := tweaksOf(a.Actions); t["sound"] != nil || t["highlight"] == true || ev.Type == "m.room.encrypted" {
		n.Prio = "high"
	}
	return n, nil
}

// stateField returns a string field of a current state event's content, or "".
func (p *Pusher) stateField(ctx context.Context, roomNID int64, k storage.StateKey, field string) string {
	ev, err := p.db.CurrentStateEvent(ctx, roomNID, k)
	if err != nil {
		return ""
	}
	return gjson.GetBytes(ev.JSON, "content."+field).Str
}

// tweaksOf returns the tweaks the actions set; a highlight tweak without value is true.
func tweaksOf(actionsJSON string) map[string]any {
	var actions []any
	_ = json.Unmarshal([]byte(actionsJSON), &actions)
	tweaks := map[string]any{}
	for _, a := range actions {
		m, ok := a.(map[string]any)
		if !ok {
			continue
		}
		name, _ := m["set_tweak"].(string)
		if name == "" {
			continue
		}
		if v, ok := m["value"]; ok {
			tweaks[name] = v
		} else if name == "highlight" {
			tweaks[name] = true
		}
	}
	return tweaks
}

// errPermanent marks a failure that retrying cannot fix.
var errPermanent = errors.New("permanent failure")

// post sends n to the gateway, retrying network errors, 429 and 5xx answers with exponential
// backoff up to the configured number of attempts, and returns the rejected pushkeys.
func (p *Pusher) post(ctx context.Context, url string, n notification) ([]string, error) {
	body, err := json.Marshal(map[string]any{"notification": n})
	if err != nil {
		return nil, err
	}
	wait := p.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		rejected, err := p.postOnce(ctx, url, body)
		if err == nil || errors.Is(err, errPermanent) || attempt >= p.cfg.Attempts {
			return rejected, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, p.cfg.MaxBackoff)
	}
}

func (p *Pusher) postOnce(ctx context.Context, url string, body []byte) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errPermanent, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.cfg.Client.Do(req)
	if errors.Is(err, netguard.ErrBlocked) {
		// The address will not change between tries: do not retry.
		return nil, fmt.Errorf("%w: %v", errPermanent, err)
	} else if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return nil, fmt.Errorf("gateway answered %s", resp.Status)
	case resp.StatusCode >= 300:
		return nil, fmt.Errorf("%w: gateway answered %s", errPermanent, resp.Status)
	}
	var out struct {
		Rejected []string `json:"rejected"`
	}
	_ = json.Unmarshal(raw, &out)
	return out.Rejected, nil
}

// removeRejected deletes the pushers whose pushkeys the gateway rejected: the spec says
// homeservers must stop sending to them.
func (p *Pusher) removeRejected(ctx context.Context, pushers []storage.Pusher, rejected []string) {
	for _, key := range rejected {
		for _, ps := range pushers {
			if ps.PushKey != key {
				continue
			}
			err := p.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.DeletePusher(ctx, ps.UserID, ps.AppID, ps.PushKey) })
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				p.log.Error("delete rejected pusher", "user_id", ps.UserID, "err", err)
			} else {
				p.log.Info("push gateway rejected pushkey: pusher removed", "user_id", ps.UserID, "destination", ps.AppID)
			}
		}
	}
}
