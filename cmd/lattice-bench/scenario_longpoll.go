package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// runLongPoll: every member of a room keeps one /sync long-poll open. First they sit idle
// (what thousands of connected clients cost when nothing happens), then one member sends at
// LongPollRate, an open loop, and every long-poll must deliver every message exactly once.
func runLongPoll(ctx context.Context, e *env) error {
	room, err := fillRoom(ctx, e)
	if err != nil {
		return err
	}
	rs := make([]*receiver, len(e.members))
	err = parallel(ctx, len(rs), setupWorkers, func(i int) (err error) {
		rs[i], err = newReceiver(ctx, e.members[i])
		return err
	})
	if err != nil {
		return err
	}
	// The long-polls time out after 60 s, longer than the idle phase, so that the idle phase
	// is really idle.
	t0 := time.Now()
	polls := startPollers(ctx, rs, 60*time.Second)
	// The server has parked every long-poll once it stops working on them.
	if !e.waitQuiet(ctx, 40*time.Second) {
		e.logf("the server did not go quiet within 40 s of the long-polls")
	}
	e.figure("long-polling devices", float64(len(rs)), "")
	e.figure("time until every long-poll is parked", time.Since(t0).Seconds(), "s")
	idle := time.Duration(e.sz.IdleSeconds) * time.Second
	idleCPU, _ := e.measureCPU(func() error { time.Sleep(idle); return nil })
	e.figure("server RSS with every device long-polling, idle", e.srv.rssMB(), "MB")
	e.figure("server CPU while idle", 100*idleCPU.Seconds()/idle.Seconds(), "% of a core")

	n := e.sz.LongPollRate * e.sz.LongPollSeconds
	interval := time.Second / time.Duration(e.sz.LongPollRate)
	e.logf("sending %d messages at %d msg/s to %d long-polls", n, e.sz.LongPollRate, len(rs))
	var res sendResult
	cpu, sendErr := e.measureCPU(func() (err error) {
		res, err = sendOpenLoop(ctx, e.members[0], room, n, interval, "lp")
		if err == nil {
			waitDelivered(ctx, rs, res.acked, 60*time.Second)
		}
		return err
	})
	rss := e.srv.rssMB()
	if err := errors.Join(sendErr, polls.stop()); err != nil {
		return err
	}
	var delays []time.Duration
	failed, firstErr := 0, error(nil)
	for _, r := range rs {
		delays = append(delays, r.delays(res.acked)...)
		if err := r.check(res.acked); err != nil {
			failed++
			firstErr = firstOf(firstErr, err)
		}
	}
	e.figure("send rate offered", float64(e.sz.LongPollRate), "msg/s")
	e.figure("messages sent", float64(len(res.acked)), "")
	e.figure("send p50", ms(percentile(res.latencies, 50)), "ms")
	e.figure("delivery p50", ms(percentile(delays, 50)), "ms")
	e.figure("delivery p99", ms(percentile(delays, 99)), "ms")
	e.figure("server CPU per delivered message", 1e6*cpu.Seconds()/float64(max(1, len(delays))), "µs")
	e.figure("server RSS after the sends", rss, "MB")
	if failed > 0 {
		e.check(fmt.Errorf("%d of %d devices did not get every message exactly once; first: %v", failed, len(rs), firstErr))
	}
	e.check(checkHistory(ctx, e.members[0], room, res.acked))
	return nil
}

// firstOf returns a if it is set, else b.
func firstOf(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
