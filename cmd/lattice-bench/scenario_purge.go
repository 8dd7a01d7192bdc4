package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// purgeLoadClients send and long-poll in the purged room and another room while the purge runs.
const purgeLoadClients = 4

// purgeLoadInterval is the pause between two sends of one load client (20 msg/s each).
const purgeLoadInterval = 50 * time.Millisecond

// runPurge: fills one room with 100,000 messages (scaled by --size), then purges nearly all of
// them through the admin API while 4 clients keep sending and long-polling in that room and
// another; reports the purge's duration and rate and the clients' send latency meanwhile, and
// checks that /messages of the room gives exactly what was sent after the purge point.
func runPurge(ctx context.Context, e *env) error {
	total := max(1000, int(100000*e.sz.Scale))
	admin, err := registerAdmin(ctx, e, "purgeadmin")
	if err != nil {
		return err
	}
	fillers, room, err := sharedRoom(ctx, e)
	if err != nil {
		return err
	}
	loaders, err := e.register(ctx, "loader", purgeLoadClients)
	if err != nil {
		return err
	}
	other, err := loaders[0].createRoom(ctx, map[string]any{"preset": "public_chat"})
	if err != nil {
		return err
	}
	for _, c := range loaders {
		if err := c.join(ctx, room); err != nil {
			return err
		}
		if c != loaders[0] {
			if err := c.join(ctx, other); err != nil {
				return err
			}
		}
	}
	e.logf("filling the room with %d messages", total)
	fill, err := sendLoad(ctx, fillers, func(int) string { return room }, (total+len(fillers)-1)/len(fillers), "fill", 0)
	if err != nil {
		return err
	}
	e.figure("messages in the room", float64(len(fill.acked)), "")
	e.figure("fill throughput", fill.rate(), "msg/s")
	point, err := fillers[0].send(ctx, room, "purge-point", "purge point")
	if err != nil {
		return err
	}
	receivers := make([]*receiver, len(loaders))
	for i, c := range loaders {
		if receivers[i], err = newReceiver(ctx, c); err != nil {
			return err
		}
	}
	polls := startPollers(ctx, receivers, 30*time.Second)
	// The same load without a purge first, for comparison.
	load := startPurgeLoad(ctx, loaders, []string{room, other}, "base")
	time.Sleep(5 * time.Second)
	base, err := load.stop()
	if err != nil {
		polls.stop()
		return err
	}
	e.figure("send p50 without a purge", ms(percentile(base.latencies, 50)), "ms")
	e.figure("send p99 without a purge", ms(percentile(base.latencies, 99)), "ms")
	load = startPurgeLoad(ctx, loaders, []string{room, other}, "load")

	t0 := time.Now()
	duration, purgeErr := purgeAndWait(ctx, admin, room, point)
	res, loadErr := load.stop()
	all := append(base.acked, res.acked...)
	waitDelivered(ctx, receivers, all, 60*time.Second)
	if err := errors.Join(purgeErr, loadErr, polls.stop()); err != nil {
		return err
	}
	e.figure("purge duration", duration.Seconds(), "s")
	e.figure("events purged per second", float64(len(fill.acked))/duration.Seconds(), "events/s")
	e.figure("sends during the purge", float64(len(res.acked)), "")
	e.figure("send p50 during the purge", ms(percentile(res.latencies, 50)), "ms")
	e.figure("send p99 during the purge", ms(percentile(res.latencies, 99)), "ms")
	e.logf("purge took %v", time.Since(t0).Round(time.Millisecond))
	for _, r := range receivers {
		e.check(r.check(all))
	}
	// /messages gives every message sent after the purge point once, and none of the fill.
	count, _, err := pageHistory(ctx, loaders[0], room, 1000)
	if err != nil {
		return err
	}
	e.check(checkCounts("/messages of the purged room", count, all, room))
	left := 0
	for _, s := range fill.acked {
		left += count[s.eventID]
	}
	if left > 0 {
		e.check(fmt.Errorf("/messages of the purged room still gives %d purged messages", left))
	}
	return nil
}

// purgeAndWait purges the room's history before point (deleting local events) and polls the
// purge's status until it is complete; it returns how long that took.
func purgeAndWait(ctx context.Context, admin *client, room, point string) (time.Duration, error) {
	var started struct {
		PurgeID string `json:"purge_id"`
	}
	t0 := time.Now()
	path := "/_synapse/admin/v1/purge_history/" + url.PathEscape(room) + "/" + url.PathEscape(point)
	if err := admin.do(ctx, "POST", path, map[string]any{"delete_local_events": true}, &started); err != nil {
		return 0, err
	}
	for ctx.Err() == nil {
		var st struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		}
		if err := admin.do(ctx, "GET", "/_synapse/admin/v1/purge_history_status/"+url.PathEscape(started.PurgeID), nil, &st); err != nil {
			return 0, err
		}
		switch st.Status {
		case "complete":
			return time.Since(t0), nil
		case "failed":
			return 0, fmt.Errorf("purge %s failed: %s", started.PurgeID, st.Error)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, ctx.Err()
}

// purgeLoad is the clients sending while a purge runs.
type purgeLoad struct {
	cancel context.CancelFunc
	start  time.Time
	wg     sync.WaitGroup
	mu     sync.Mutex // guards res and err
	res    sendResult
	err    error
}

// startPurgeLoad has client i send into rooms[i%len(rooms)] every purgeLoadInterval until stop;
// tag makes the transaction IDs and bodies unique.
func startPurgeLoad(ctx context.Context, cs []*client, rooms []string, tag string) *purgeLoad {
	ctx, cancel := context.WithCancel(ctx)
	l := &purgeLoad{cancel: cancel, start: time.Now()}
	for i, c := range cs {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			room := rooms[i%len(rooms)]
			for j := 0; ctx.Err() == nil; j++ {
				body := fmt.Sprintf("%s %d %d", tag, i, j)
				t0 := time.Now()
				id, err := c.send(ctx, room, fmt.Sprintf("%s-%d", tag, j), body)
				if ctx.Err() != nil {
					return
				}
				l.mu.Lock()
				if err != nil {
					l.err = errors.Join(l.err, err)
				} else {
					l.res.latencies = append(l.res.latencies, time.Since(t0))
					l.res.acked = append(l.res.acked, sent{room, id, body, t0, time.Now()})
				}
				l.mu.Unlock()
				if err != nil {
					return
				}
				time.Sleep(time.Until(t0.Add(purgeLoadInterval)))
			}
		}()
	}
	return l
}

func (l *purgeLoad) stop() (sendResult, error) {
	l.cancel()
	l.wg.Wait()
	l.res.elapsed = time.Since(l.start)
	return l.res, l.err
}

// registerAdmin registers a server admin through shared-secret registration, with the
// secret of the server's generated configuration.
func registerAdmin(ctx context.Context, e *env, name string) (*client, error) {
	cfg, err := os.ReadFile(filepath.Join(e.srv.dir, "lattice.yaml"))
	if err != nil {
		return nil, err
	}
	secret := regexp.MustCompile(`(?m)^  shared_secret: "([^"]+)"`).FindSubmatch(cfg)
	if secret == nil {
		return nil, errors.New("no registration shared secret in the generated configuration")
	}
	c := &client{hc: e.b.hc, base: e.srv.URL}
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	if err := c.do(ctx, "GET", "/_synapse/admin/v1/register", nil, &nonce); err != nil {
		return nil, err
	}
	mac := hmac.New(sha1.New, secret[1])
	mac.Write([]byte(strings.Join([]string{nonce.Nonce, name, benchPassword, "admin"}, "\x00")))
	err = c.do(ctx, "POST", "/_synapse/admin/v1/register", map[string]any{
		"nonce": nonce.Nonce, "username": name, "password": benchPassword, "admin": true,
		"mac": hex.EncodeToString(mac.Sum(nil)),
	}, c)
	return c, err
}
