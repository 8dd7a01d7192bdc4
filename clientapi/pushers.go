package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// pusherJSON is a pusher as GET /pushers lists it.
type pusherJSON struct {
	PushKey           string          `json:"pushkey"`
	Kind              string          `json:"kind"`
	AppID             string          `json:"app_id"`
	AppDisplayName    string          `json:"app_display_name"`
	DeviceDisplayName string          `json:"device_display_name"`
	ProfileTag        string          `json:"profile_tag,omitempty"`
	Lang              string          `json:"lang"`
	Data              json.RawMessage `json:"data"`
}

// handleGetPushers handles GET /pushers.
func (s *Server) handleGetPushers(r *http.Request) (any, error) {
	ps, err := s.db.Pushers(r.Context(), httputil.Device(r.Context()).UserID)
	if err != nil {
		return nil, err
	}
	out := make([]pusherJSON, 0, len(ps))
	for _, p := range ps {
		out = append(out, pusherJSON{PushKey: p.PushKey, Kind: p.Kind, AppID: p.AppID, AppDisplayName: p.AppDisplayName,
			DeviceDisplayName: p.DeviceDisplayName, ProfileTag: p.ProfileTag, Lang: p.Lang, Data: json.RawMessage(p.Data)})
	}
	return map[string]any{"pushers": out}, nil
}

// setPusherBody is the body of POST /pushers/set.
type setPusherBody struct {
	pusherJSON
	Kind   json.RawMessage `json:"kind"` // a string, or null to delete the pusher
	Append bool            `json:"append"`
}

// handleSetPusher handles POST /pushers/set: a kind of null deletes the requester's pusher
// with the app ID and pushkey; "http" creates or updates it. Unless append is true, the same
// app ID and pushkey of other users are removed.
func (s *Server) handleSetPusher(r *http.Request) (any, error) {
	ctx, dev := r.Context(), httputil.Device(r.Context())
	var body setPusherBody
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.AppID == "" || body.PushKey == "" || body.Kind == nil {
		return nil, spec.MissingParam("kind, app_id and pushkey are required")
	}
	if utf8.RuneCountInString(body.AppID) > 64 || len(body.PushKey) > 512 {
		return nil, spec.InvalidParam("app_id is at most 64 characters and pushkey at most 512 bytes")
	}
	if string(body.Kind) == "null" {
		err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
			return tx.DeletePusher(ctx, dev.UserID, body.AppID, body.PushKey)
		})
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
		return struct{}{}, nil
	}
	p, err := checkPusher(dev.UserID, body)
	if err != nil {
		return nil, err
	}
	p.DeviceID = dev.DeviceID // the pusher goes when this device logs out
	p.PushKeyTS = s.rooms.Now().UnixMilli()
	if old, err := s.db.Pushers(ctx, dev.UserID); err == nil {
		for _, o := range old {
			if o.AppID == p.AppID && o.PushKey == p.PushKey {
				p.PushKeyTS = o.PushKeyTS // the pushkey is as old as its first registration
			}
		}
	}
	return struct{}{}, s.db.WithTx(ctx, func(tx *storage.Tx) error {
		return tx.SetPusher(ctx, p, body.Append)
	})
}

// checkPusher checks the fields a pusher of a kind other than null needs: every field but
// profile_tag, and for kind http a data.url with the push gateway's notify path.
func checkPusher(userID string, body setPusherBody) (storage.Pusher, error) {
	var kind string
	if err := json.Unmarshal(body.Kind, &kind); err != nil {
		return storage.Pusher{}, spec.BadJSON("kind must be a string or null")
	}
	if kind != "http" {
		return storage.Pusher{}, spec.InvalidParam("unsupported pusher kind " + kind + ": the only kind is http")
	}
	var missing []string
	for name, v := range map[string]string{"app_display_name": body.AppDisplayName,
		"device_display_name": body.DeviceDisplayName, "lang": body.Lang} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	var data map[string]any
	if len(body.Data) == 0 || json.Unmarshal(body.Data, &data) != nil || data == nil {
		missing = append(missing, "data")
	}
	if len(missing) > 0 {
		return storage.Pusher{}, spec.MissingParam("Missing parameters: " + strings.Join(missing, ", "))
	}
	rawURL, ok := data["url"].(string)
	if !ok {
		return storage.Pusher{}, spec.MissingParam("data.url is required for http pushers")
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "/_matrix/push/v1/notify" {
		return storage.Pusher{}, spec.InvalidParam("data.url must be an http(s) URL with the path /_matrix/push/v1/notify")
	}
	if f, ok := data["format"]; ok && f != "event_id_only" {
		return storage.Pusher{}, spec.InvalidParam(`data.format must be "event_id_only" when given`)
	}
	return storage.Pusher{UserID: userID, AppID: body.AppID, PushKey: body.PushKey, Kind: kind,
		AppDisplayName: body.AppDisplayName, DeviceDisplayName: body.DeviceDisplayName,
		ProfileTag: body.ProfileTag, Lang: body.Lang, Data: string(body.Data)}, nil
}
