package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// joinWorkers is the number of members joining at once while a big room fills.
const joinWorkers = 16

// fillRoom has members[0] create a public room and every other member join it, joinWorkers
// at a time, and reports the join latency in the growing room.
func fillRoom(ctx context.Context, e *env) (string, error) {
	room, err := e.members[0].createRoom(ctx, map[string]any{"preset": "public_chat"})
	if err != nil {
		return "", err
	}
	var (
		mu  sync.Mutex
		lat []time.Duration
	)
	t0 := time.Now()
	err = parallel(ctx, len(e.members)-1, joinWorkers, func(i int) error {
		t := time.Now()
		if err := e.members[i+1].join(ctx, room); err != nil {
			return err
		}
		mu.Lock()
		lat = append(lat, time.Since(t))
		if len(lat)%5000 == 0 {
			e.logf("%d joined", len(lat))
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return "", err
	}
	e.figure("members", float64(len(e.members)), "")
	e.figure("join p50 while the room fills", ms(percentile(lat, 50)), "ms")
	e.figure("joins per second", float64(len(lat))/time.Since(t0).Seconds(), "joins/s")
	return room, nil
}

// runBigRoom: a room with every member of the population. Times sends (with the server CPU
// they cost per member of the room), /state, /members and a member's lazy-loading initial sync.
func runBigRoom(ctx context.Context, e *env) error {
	if len(e.members) < 5 {
		return fmt.Errorf("a big room needs at least 5 members, not %d", len(e.members))
	}
	room, err := fillRoom(ctx, e)
	if err != nil {
		return err
	}
	n := len(e.members)
	r, err := newReceiver(ctx, e.members[n-1])
	if err != nil {
		return err
	}
	rs := []*receiver{r}
	senders := e.members[1 : 1+min(e.sz.BigRoomSenders, n-2)]
	polls := startPollers(ctx, rs, 30*time.Second)
	var res sendResult
	cpu, sendErr := e.measureCPU(func() (err error) {
		res, err = sendLoad(ctx, senders, func(int) string { return room }, e.sz.BigRoomSends, "big", 0)
		return err
	})
	if sendErr == nil {
		waitDelivered(ctx, rs, res.acked, 60*time.Second)
	}
	if err := errors.Join(sendErr, polls.stop()); err != nil {
		return err
	}
	e.figure("send p50", ms(percentile(res.latencies, 50)), "ms")
	e.figure("send p99", ms(percentile(res.latencies, 99)), "ms")
	perMsg := cpu.Seconds() / float64(len(res.acked))
	e.figure("server CPU per message", perMsg*1000, "ms")
	e.figure("server CPU per member per message", perMsg*1e6/float64(n), "µs")
	e.check(rs[0].check(res.acked))
	e.check(checkHistory(ctx, senders[0], room, res.acked))
	return measureRoomReads(ctx, e, room)
}

// measureRoomReads times /state, /members and a lazy-loading initial /sync of one member.
func measureRoomReads(ctx context.Context, e *env, room string) error {
	n := len(e.members)
	reader := e.members[2]
	reads := []struct {
		name, path string
		count      func([]byte) (int, error)
	}{
		{"/state", roomPath(room, "/state"), countStateMembers},
		{"/members", roomPath(room, "/members"), countMembersChunk},
	}
	for _, rd := range reads {
		var lat []time.Duration
		for i := 0; i < e.sz.ReadRepeats; i++ {
			t0 := time.Now()
			body, err := reader.raw(ctx, "GET", rd.path, nil)
			if err != nil {
				return err
			}
			lat = append(lat, time.Since(t0))
			if got, err := rd.count(body); err != nil || got != n {
				e.check(fmt.Errorf("%s lists %d joined members (%v), want %d", rd.name, got, err, n))
			}
		}
		e.figure(rd.name+" p50", ms(percentile(lat, 50)), "ms")
	}
	const lazy = `{"room":{"state":{"lazy_load_members":true},"timeline":{"limit":20}}}`
	var lat []time.Duration
	for i := 0; i < max(3, e.sz.ReadRepeats/4); i++ {
		t0 := time.Now()
		resp, err := e.members[3].sync(ctx, "", lazy, 0)
		if err != nil {
			return err
		}
		lat = append(lat, time.Since(t0))
		if _, ok := resp.Rooms.Join[room]; !ok {
			e.check(fmt.Errorf("lazy-loading initial /sync lacks the room"))
		}
	}
	e.figure("lazy-loading initial sync p50", ms(percentile(lat, 50)), "ms")
	return nil
}

// stateEvent is the part of a state event the member counts read.
type stateEvent struct {
	Type    string `json:"type"`
	Content struct {
		Membership string `json:"membership"`
	} `json:"content"`
}

func countStateMembers(body []byte) (int, error) {
	var evs []stateEvent
	err := json.Unmarshal(body, &evs)
	return countJoined(evs), err
}

func countMembersChunk(body []byte) (int, error) {
	var resp struct {
		Chunk []stateEvent `json:"chunk"`
	}
	err := json.Unmarshal(body, &resp)
	return countJoined(resp.Chunk), err
}

func countJoined(evs []stateEvent) int {
	n := 0
	for _, ev := range evs {
		if ev.Type == "m.room.member" && ev.Content.Membership == "join" {
			n++
		}
	}
	return n
}
