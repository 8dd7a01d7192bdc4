package main

import (
	"context"
	"fmt"
	"time"
)

// setupWorkers is the concurrency of setup requests (rooms, messages, joins): enough to keep
// two cores busy without measuring anything.
const setupWorkers = 8

// runSync: one user in rooms rooms, each with RoomMessages messages. Times the initial /sync
// (no filter, as a new client does it), then no-op incremental /syncs (timeout 0, nothing new),
// the request every idle client repeats.
func runSync(ctx context.Context, e *env, rooms int) error {
	cs, err := e.register(ctx, "reader", 1)
	if err != nil {
		return err
	}
	u := cs[0]
	if err := fillRooms(ctx, u, rooms, e.sz.RoomMessages); err != nil {
		return err
	}
	e.figure("rooms", float64(rooms), "")
	e.figure("messages per room", float64(e.sz.RoomMessages), "")

	e.figure("server RSS before initial syncs", e.srv.rssMB(), "MB")
	var initial []time.Duration
	var since string
	initialCPU, err := e.measureCPU(func() error {
		for i := 0; i < 3; i++ {
			t0 := time.Now()
			resp, err := u.sync(ctx, "", "", 0)
			if err != nil {
				return err
			}
			initial = append(initial, time.Since(t0))
			if n := len(resp.Rooms.Join); n != rooms {
				e.check(fmt.Errorf("initial /sync has %d rooms, want %d", n, rooms))
			}
			since = resp.NextBatch
		}
		return nil
	})
	if err != nil {
		return err
	}
	e.figure("initial sync, first", ms(initial[0]), "ms")
	e.figure("initial sync, p50 of 3", ms(percentile(initial, 50)), "ms")
	e.figure("server CPU per initial sync", ms(initialCPU)/float64(len(initial)), "ms")
	e.figure("server RSS after initial syncs", e.srv.rssMB(), "MB")

	var noop []time.Duration
	cpu, err := e.measureCPU(func() error {
		for i := 0; i < e.sz.NoopSyncs; i++ {
			t0 := time.Now()
			resp, err := u.sync(ctx, since, "", 0)
			if err != nil {
				return err
			}
			noop = append(noop, time.Since(t0))
			for id, room := range resp.Rooms.Join {
				if len(room.Timeline.Events) > 0 {
					e.check(fmt.Errorf("no-op /sync returned events in %s", id))
				}
			}
			since = resp.NextBatch
		}
		return nil
	})
	if err != nil {
		return err
	}
	e.figure("no-op incremental sync p50", ms(percentile(noop, 50)), "ms")
	e.figure("no-op incremental sync p99", ms(percentile(noop, 99)), "ms")
	e.figure("server CPU per no-op sync", ms(cpu)/float64(len(noop)), "ms")
	return nil
}

// fillRooms has u create rooms rooms and send msgs messages into each.
func fillRooms(ctx context.Context, u *client, rooms, msgs int) error {
	return parallel(ctx, rooms, setupWorkers, func(i int) error {
		id, err := u.createRoom(ctx, map[string]any{"name": fmt.Sprintf("room %d", i)})
		if err != nil {
			return err
		}
		for j := 0; j < msgs; j++ {
			if _, err := u.send(ctx, id, fmt.Sprint("t", j), fmt.Sprintf("room %d message %d", i, j)); err != nil {
				return err
			}
		}
		return nil
	})
}

// runHistory: 4 senders fill one room, then a member pages back through it all with /messages
// as a client scrolling up does.
func runHistory(ctx context.Context, e *env) error {
	senders, err := e.register(ctx, "sender", 4)
	if err != nil {
		return err
	}
	room, err := senders[0].createRoom(ctx, map[string]any{"preset": "public_chat"})
	if err != nil {
		return err
	}
	for _, c := range senders[1:] {
		if err := c.join(ctx, room); err != nil {
			return err
		}
	}
	per := max(1, e.sz.HistoryMessages/len(senders))
	res, err := sendLoad(ctx, senders, func(int) string { return room }, per, "h", 0)
	if err != nil {
		return err
	}
	e.logf("%d messages sent", len(res.acked))

	t0 := time.Now()
	count, pages, err := pageHistory(ctx, senders[0], room, e.sz.HistoryPage)
	if err != nil {
		return err
	}
	total := time.Since(t0)
	e.figure("messages paged", float64(len(count)), "")
	e.figure(fmt.Sprintf("page of %d, p50", e.sz.HistoryPage), ms(percentile(pages, 50)), "ms")
	e.figure(fmt.Sprintf("page of %d, p99", e.sz.HistoryPage), ms(percentile(pages, 99)), "ms")
	e.figure("whole history", ms(total), "ms")
	e.check(checkCounts("/messages", count, res.acked, room))
	return nil
}
