package main

import (
	"context"
	"time"
)

// sendSetup is the rooms and clients of a send scenario.
type sendSetup struct {
	senders   []*client
	room      func(i int) string // the room sender i sends into
	receivers []*receiver        // long-poll during the sends and must get every message once
	// tag makes the messages' bodies and transaction IDs ("msg" when empty): a scenario that
	// sends twice needs two. prefix begins the figures' names.
	tag, prefix string
}

// measureSends runs a send load of n messages per sender while the receivers long-poll, then
// reports throughput, send latency, server CPU per message and (paced) delivery latency, and
// checks every acknowledged message through each receiver's /sync and through /messages.
func measureSends(ctx context.Context, e *env, s sendSetup, n int, interval time.Duration) error {
	_, err := measureSendsResult(ctx, e, s, n, interval)
	return err
}

// measureSendsResult is measureSends, returning what the load sent.
func measureSendsResult(ctx context.Context, e *env, s sendSetup, n int, interval time.Duration) (sendResult, error) {
	if s.tag == "" {
		s.tag = "msg"
	}
	polls := startPollers(ctx, s.receivers, 30*time.Second)
	var res sendResult
	cpu, err := e.measureCPU(func() (err error) {
		res, err = sendLoad(ctx, s.senders, s.room, n, s.tag, interval)
		return err
	})
	if err != nil {
		polls.stop()
		return res, err
	}
	waitDelivered(ctx, s.receivers, res.acked, 60*time.Second)
	if err := polls.stop(); err != nil {
		return res, err
	}
	e.figure(s.prefix+"messages sent", float64(len(res.acked)), "")
	e.figure(s.prefix+"throughput", res.rate(), "msg/s")
	e.figure(s.prefix+"send p50", ms(percentile(res.latencies, 50)), "ms")
	e.figure(s.prefix+"send p99", ms(percentile(res.latencies, 99)), "ms")
	e.figure(s.prefix+"server CPU per message", ms(cpu)/float64(len(res.acked)), "ms")
	if interval > 0 {
		var delays []time.Duration
		for _, r := range s.receivers {
			delays = append(delays, r.delays(res.acked)...)
		}
		e.figure(s.prefix+"delivery p50", ms(percentile(delays, 50)), "ms")
		e.figure(s.prefix+"delivery p99", ms(percentile(delays, 99)), "ms")
	}
	for _, r := range s.receivers {
		e.check(r.check(res.acked))
	}
	checked := map[string]bool{}
	for i, c := range s.senders {
		if room := s.room(i); !checked[room] {
			checked[room] = true
			e.check(checkHistory(ctx, c, room, res.acked))
		}
	}
	return res, nil
}

// receiversFor registers n receivers, joins them to rooms and takes their /sync positions.
func receiversFor(ctx context.Context, e *env, n int, rooms []string) ([]*receiver, error) {
	cs, err := e.register(ctx, "receiver", n)
	if err != nil {
		return nil, err
	}
	rs := make([]*receiver, n)
	err = parallel(ctx, n, 8, func(i int) error {
		for _, room := range rooms {
			if err := cs[i].join(ctx, room); err != nil {
				return err
			}
		}
		rs[i], err = newReceiver(ctx, cs[i])
		return err
	})
	return rs, err
}

// runSendOwn: every sender sends into a room of their own; one receiver is in all of them.
func runSendOwn(ctx context.Context, e *env) error {
	senders, err := e.register(ctx, "sender", e.sz.Senders)
	if err != nil {
		return err
	}
	rooms := make([]string, len(senders))
	for i, c := range senders {
		if rooms[i], err = c.createRoom(ctx, map[string]any{"preset": "public_chat"}); err != nil {
			return err
		}
	}
	rs, err := receiversFor(ctx, e, 1, rooms)
	if err != nil {
		return err
	}
	return measureSends(ctx, e, sendSetup{senders: senders, room: func(i int) string { return rooms[i] }, receivers: rs}, e.sz.OwnMessages, 0)
}

// sharedRoom registers the senders and makes them all members of one public room.
func sharedRoom(ctx context.Context, e *env) ([]*client, string, error) {
	senders, err := e.register(ctx, "sender", e.sz.Senders)
	if err != nil {
		return nil, "", err
	}
	room, err := senders[0].createRoom(ctx, map[string]any{"preset": "public_chat"})
	if err != nil {
		return nil, "", err
	}
	for _, c := range senders[1:] {
		if err := c.join(ctx, room); err != nil {
			return nil, "", err
		}
	}
	return senders, room, nil
}

// runSendShared: all senders send into one room; one receiver is in it.
func runSendShared(ctx context.Context, e *env) error {
	senders, room, err := sharedRoom(ctx, e)
	if err != nil {
		return err
	}
	rs, err := receiversFor(ctx, e, 1, []string{room})
	if err != nil {
		return err
	}
	return measureSends(ctx, e, sendSetup{senders: senders, room: func(int) string { return room }, receivers: rs}, e.sz.SharedMessages, 0)
}

// runDelivery: the senders keep the shared room busy at a steady rate (latency at saturation
// would measure queueing, not delivery) while the receivers long-poll.
func runDelivery(ctx context.Context, e *env) error {
	senders, room, err := sharedRoom(ctx, e)
	if err != nil {
		return err
	}
	rs, err := receiversFor(ctx, e, e.sz.Receivers, []string{room})
	if err != nil {
		return err
	}
	interval := time.Duration(len(senders)) * time.Second / time.Duration(e.sz.PacedRate)
	e.logf("%d receivers long-poll; %d senders send %d messages each at %d msg/s in total",
		len(rs), len(senders), e.sz.PacedMessages, e.sz.PacedRate)
	return measureSends(ctx, e, sendSetup{senders: senders, room: func(int) string { return room }, receivers: rs}, e.sz.PacedMessages, interval)
}
