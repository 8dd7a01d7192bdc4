package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// newHTTPClient returns the client every scenario shares: keep-alive connections without a
// per-host cap (the long-poll scenario holds thousands open at once) and a bound on every
// request, so a stuck server fails the scenario instead of hanging the benchmark.
func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 120 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        0,
			MaxIdleConnsPerHost: 100_000,
			MaxConnsPerHost:     0,
			IdleConnTimeout:     90 * time.Second,
		},
	}
}

// client is one logged-in Matrix device.
type client struct {
	hc     *http.Client
	base   string
	UserID string `json:"user_id"`
	Token  string `json:"access_token"`
}

// statusError is a response other than 200.
type statusError struct {
	method, path string
	status       int
	body         string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s %s: status %d: %.300s", e.method, e.path, e.status, e.body)
}

// do sends a request with a JSON body (nil for none) and decodes a 200 response into out
// (nil to discard it).
func (c *client) do(ctx context.Context, method, path string, body, out any) error {
	raw, err := c.raw(ctx, method, path, body)
	if err != nil || out == nil {
		return err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// raw sends a request and returns the body of a 200 response.
func (c *client) raw(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		js, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &statusError{method, path, resp.StatusCode, string(data)}
	}
	return data, nil
}

// benchPassword is every benchmark user's password.
const benchPassword = "bench-password"

// register creates an account through open registration (the m.login.dummy flow) and returns
// its first device.
func register(ctx context.Context, hc *http.Client, base, name string) (*client, error) {
	c := &client{hc: hc, base: base}
	req := map[string]any{
		"username": name, "password": benchPassword,
		"auth": map[string]string{"type": "m.login.dummy"},
	}
	if err := c.do(ctx, "POST", "/_matrix/client/v3/register", req, c); err != nil {
		return nil, err
	}
	return c, nil
}

func roomPath(roomID, rest string) string {
	return "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + rest
}

// createRoom creates a room with the given request body and returns its ID.
func (c *client) createRoom(ctx context.Context, body map[string]any) (string, error) {
	var resp struct {
		RoomID string `json:"room_id"`
	}
	err := c.do(ctx, "POST", "/_matrix/client/v3/createRoom", body, &resp)
	return resp.RoomID, err
}

func (c *client) join(ctx context.Context, roomID string) error {
	return c.do(ctx, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID), map[string]any{}, nil)
}

// send sends an m.text message and returns its event ID.
func (c *client) send(ctx context.Context, roomID, txnID, body string) (string, error) {
	var resp struct {
		EventID string `json:"event_id"`
	}
	path := roomPath(roomID, "/send/m.room.message/"+url.PathEscape(txnID))
	err := c.do(ctx, "PUT", path, map[string]string{"msgtype": "m.text", "body": body}, &resp)
	return resp.EventID, err
}

// syncResponse is the part of a /sync response the scenarios read.
type syncResponse struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Events  []timelineEvent `json:"events"`
				Limited bool            `json:"limited"`
			} `json:"timeline"`
			State struct {
				Events []json.RawMessage `json:"events"`
			} `json:"state"`
		} `json:"join"`
	} `json:"rooms"`
}

type timelineEvent struct {
	EventID string `json:"event_id"`
	Type    string `json:"type"`
	Content struct {
		Body string `json:"body"`
	} `json:"content"`
}

// sync does one /sync; filter is inline filter JSON ("" for none), since "" for an initial sync.
func (c *client) sync(ctx context.Context, since, filter string, timeout time.Duration) (*syncResponse, error) {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	if filter != "" {
		q.Set("filter", filter)
	}
	q.Set("timeout", fmt.Sprint(timeout.Milliseconds()))
	var resp syncResponse
	err := c.do(ctx, "GET", "/_matrix/client/v3/sync?"+q.Encode(), nil, &resp)
	return &resp, err
}

// Filters the scenarios sync with. Lazy-loading members keeps the responses of big rooms
// about the timeline, as clients of big rooms do.
const (
	sinceFilter    = `{"room":{"timeline":{"limit":1},"state":{"lazy_load_members":true}}}`
	longPollFilter = `{"room":{"timeline":{"limit":500},"state":{"lazy_load_members":true}}}`
)
