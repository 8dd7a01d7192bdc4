package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"sync"
	"time"
)

// percentile returns the p-th percentile (nearest rank) of ds, 0 for none.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p/100))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// sent is one acknowledged message.
type sent struct {
	roomID, eventID, body string
	at                    time.Time // when the request started
	done                  time.Time // when its 200 arrived
}

// sendResult is what a send load measured.
type sendResult struct {
	latencies []time.Duration
	acked     []sent
	elapsed   time.Duration
}

func (r sendResult) rate() float64 { return float64(len(r.acked)) / r.elapsed.Seconds() }

// sendLoad has every sender send n messages into room(i), one after the other, all senders at
// once. With interval > 0 each sender sends at most one message per interval, the senders
// spread evenly over it, so the total rate is len(senders)/interval.
func sendLoad(ctx context.Context, senders []*client, room func(i int) string, n int, tag string, interval time.Duration) (sendResult, error) {
	var (
		mu  sync.Mutex
		res sendResult
	)
	start := time.Now()
	err := parallel(ctx, len(senders), len(senders), func(i int) error {
		next := start.Add(time.Duration(i) * interval / time.Duration(len(senders)))
		for j := 0; j < n; j++ {
			if interval > 0 {
				time.Sleep(time.Until(next))
				next = next.Add(interval)
			}
			body := fmt.Sprintf("%s %d %d", tag, i, j)
			t0 := time.Now()
			id, err := senders[i].send(ctx, room(i), fmt.Sprintf("%s-%d", tag, j), body)
			if err != nil {
				return err
			}
			d := time.Since(t0)
			mu.Lock()
			res.latencies = append(res.latencies, d)
			res.acked = append(res.acked, sent{room(i), id, body, t0, t0.Add(d)})
			mu.Unlock()
		}
		return nil
	})
	res.elapsed = time.Since(start)
	return res, err
}

// sendOpenLoop has c send n messages into roomID, one every interval whether or not the
// previous one was acknowledged (an open loop: a slow server gets the rate it was offered, and
// its slowness shows in the latencies instead of lowering the rate).
func sendOpenLoop(ctx context.Context, c *client, roomID string, n int, interval time.Duration, tag string) (sendResult, error) {
	var (
		mu   sync.Mutex
		res  sendResult
		wg   sync.WaitGroup
		errs []error
	)
	start := time.Now()
	for j := 0; j < n && ctx.Err() == nil; j++ {
		time.Sleep(time.Until(start.Add(time.Duration(j) * interval)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf("%s %d", tag, j)
			t0 := time.Now()
			id, err := c.send(ctx, roomID, fmt.Sprintf("%s-%d", tag, j), body)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			d := time.Since(t0)
			res.latencies = append(res.latencies, d)
			res.acked = append(res.acked, sent{roomID, id, body, t0, t0.Add(d)})
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res, errors.Join(errs...)
}

// receiver is one device long-polling /sync, recording every m.room.message it is given.
type receiver struct {
	c     *client
	since string

	mu      sync.Mutex
	count   map[string]int       // event ID -> times received
	arrived map[string]time.Time // body -> first arrival
	gaps    int                  // limited timelines, which may have skipped messages
}

// newReceiver takes c's current position with a small initial /sync.
func newReceiver(ctx context.Context, c *client) (*receiver, error) {
	resp, err := c.sync(ctx, "", sinceFilter, 0)
	if err != nil {
		return nil, err
	}
	return &receiver{c: c, since: resp.NextBatch, count: map[string]int{}, arrived: map[string]time.Time{}}, nil
}

// run long-polls until ctx ends; the error is nil when it ended by ctx.
func (r *receiver) run(ctx context.Context, timeout time.Duration) error {
	for ctx.Err() == nil {
		resp, err := r.c.sync(ctx, r.since, longPollFilter, timeout)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		now := time.Now()
		r.mu.Lock()
		for _, room := range resp.Rooms.Join {
			if room.Timeline.Limited {
				r.gaps++
			}
			for _, ev := range room.Timeline.Events {
				if ev.Type != "m.room.message" {
					continue
				}
				r.count[ev.EventID]++
				if _, ok := r.arrived[ev.Content.Body]; !ok {
					r.arrived[ev.Content.Body] = now
				}
			}
		}
		r.mu.Unlock()
		r.since = resp.NextBatch
	}
	return nil
}

// has reports whether every message in acked has arrived.
func (r *receiver) has(acked []sent) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range acked {
		if r.count[s.eventID] == 0 {
			return false
		}
	}
	return true
}

// check returns an error unless every message in acked arrived exactly once.
func (r *receiver) check(acked []sent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	missing, dup := 0, 0
	for _, s := range acked {
		switch n := r.count[s.eventID]; {
		case n == 0:
			missing++
		case n > 1:
			dup++
		}
	}
	if missing > 0 || dup > 0 {
		return fmt.Errorf("/sync of %s: %d of %d acknowledged messages missing, %d received more than once (%d limited timelines)",
			r.c.UserID, missing, len(acked), dup, r.gaps)
	}
	return nil
}

// delays returns, for each message in acked that arrived, the time from the start of its send
// request to its arrival.
func (r *receiver) delays(acked []sent) []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	ds := make([]time.Duration, 0, len(acked))
	for _, s := range acked {
		if t, ok := r.arrived[s.body]; ok {
			ds = append(ds, t.Sub(s.at))
		}
	}
	return ds
}

// pollers runs receivers until stop is called; stop returns the first error of any of them.
type pollers struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error
}

func startPollers(ctx context.Context, rs []*receiver, timeout time.Duration) *pollers {
	ctx, cancel := context.WithCancel(ctx)
	p := &pollers{cancel: cancel}
	for _, r := range rs {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := r.run(ctx, timeout); err != nil {
				p.mu.Lock()
				p.err = errors.Join(p.err, err)
				p.mu.Unlock()
				cancel()
			}
		}()
	}
	return p
}

func (p *pollers) stop() error {
	p.cancel()
	p.wg.Wait()
	return p.err
}

// waitDelivered waits until every receiver has every message in acked, or limit passes.
func waitDelivered(ctx context.Context, rs []*receiver, acked []sent, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for _, r := range rs {
		for !r.has(acked) && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// pageHistory pages back through the whole room with /messages (limit per page) and returns
// how often each m.room.message event ID was given, and the time each page took.
func pageHistory(ctx context.Context, c *client, roomID string, limit int) (map[string]int, []time.Duration, error) {
	count := map[string]int{}
	var pages []time.Duration
	from := ""
	for {
		path := roomPath(roomID, fmt.Sprintf("/messages?dir=b&limit=%d", limit))
		if from != "" {
			path += "&from=" + url.QueryEscape(from)
		}
		var resp struct {
			Chunk []timelineEvent `json:"chunk"`
			End   string          `json:"end"`
		}
		t0 := time.Now()
		if err := c.do(ctx, "GET", path, nil, &resp); err != nil {
			return count, pages, err
		}
		pages = append(pages, time.Since(t0))
		for _, ev := range resp.Chunk {
			if ev.Type == "m.room.message" {
				count[ev.EventID]++
			}
		}
		if resp.End == "" || len(resp.Chunk) == 0 {
			return count, pages, nil
		}
		from = resp.End
	}
}

// checkHistory returns an error unless /messages gives every message of acked in roomID
// exactly once.
func checkHistory(ctx context.Context, c *client, roomID string, acked []sent) error {
	count, _, err := pageHistory(ctx, c, roomID, 1000)
	if err != nil {
		return err
	}
	return checkCounts("/messages of "+roomID, count, acked, roomID)
}

// checkCounts returns an error unless count has 1 for every message of acked in roomID.
func checkCounts(what string, count map[string]int, acked []sent, roomID string) error {
	missing, dup, total := 0, 0, 0
	for _, s := range acked {
		if s.roomID != roomID {
			continue
		}
		total++
		switch n := count[s.eventID]; {
		case n == 0:
			missing++
		case n > 1:
			dup++
		}
	}
	if missing > 0 || dup > 0 {
		return fmt.Errorf("%s: %d of %d acknowledged messages missing, %d given more than once", what, missing, total, dup)
	}
	return nil
}
