package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// runRooms: concurrent creators each create rooms one after the other; then as many joiners
// join every one of them; then one user creates rooms all at once in room version 12, where a
// room ID is the hash of its create event, so two creations in the same millisecond must not
// collide.
func runRooms(ctx context.Context, e *env) error {
	creators, err := e.register(ctx, "creator", e.sz.Creators)
	if err != nil {
		return err
	}
	var (
		mu    sync.Mutex
		rooms []string
		lat   []time.Duration
	)
	t0 := time.Now()
	err = parallel(ctx, len(creators), len(creators), func(i int) error {
		for j := 0; j < e.sz.RoomsPerCreator; j++ {
			t := time.Now()
			id, err := creators[i].createRoom(ctx, map[string]any{"preset": "public_chat", "name": fmt.Sprintf("room %d.%d", i, j)})
			if err != nil {
				return err
			}
			mu.Lock()
			rooms, lat = append(rooms, id), append(lat, time.Since(t))
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return err
	}
	e.figure("rooms created", float64(len(rooms)), "")
	e.figure("createRoom throughput", float64(len(rooms))/time.Since(t0).Seconds(), "rooms/s")
	e.figure("createRoom p50", ms(percentile(lat, 50)), "ms")
	e.figure("createRoom p99", ms(percentile(lat, 99)), "ms")

	if err := measureJoins(ctx, e, rooms); err != nil {
		return err
	}
	return oneUserCreates(ctx, e, e.sz.OneUserRooms)
}

// measureJoins has Creators joiners join every room, all joiners at once.
func measureJoins(ctx context.Context, e *env, rooms []string) error {
	joiners, err := e.register(ctx, "joiner", e.sz.Creators)
	if err != nil {
		return err
	}
	var (
		mu  sync.Mutex
		lat []time.Duration
	)
	t0 := time.Now()
	err = parallel(ctx, len(joiners), len(joiners), func(i int) error {
		for _, room := range rooms {
			t := time.Now()
			if err := joiners[i].join(ctx, room); err != nil {
				return err
			}
			mu.Lock()
			lat = append(lat, time.Since(t))
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return err
	}
	e.figure("join throughput", float64(len(lat))/time.Since(t0).Seconds(), "joins/s")
	e.figure("join p50", ms(percentile(lat, 50)), "ms")
	e.figure("join p99", ms(percentile(lat, 99)), "ms")
	return nil
}

// oneUserCreates has one user start n createRoom requests (room version 12) at once and
// reports how many failed.
func oneUserCreates(ctx context.Context, e *env, n int) error {
	cs, err := e.register(ctx, "hasty", 1)
	if err != nil {
		return err
	}
	var (
		mu       sync.Mutex
		failures int
		first    error
		ids      = map[string]bool{}
	)
	_ = parallel(ctx, n, n, func(i int) error {
		id, err := cs[0].createRoom(ctx, map[string]any{"room_version": "12", "name": fmt.Sprintf("hasty %d", i)})
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failures++
			if first == nil {
				first = err
			}
		} else {
			ids[id] = true
		}
		return nil
	})
	e.figure(fmt.Sprintf("concurrent v12 createRoom failures of %d", n), float64(failures), "")
	if failures > 0 {
		e.check(fmt.Errorf("%d of %d concurrent createRoom requests failed; first: %v", failures, n, first))
	}
	if len(ids) != n-failures {
		e.check(fmt.Errorf("%d createRoom successes gave %d distinct room IDs", n-failures, len(ids)))
	}
	return nil
}
