// Package delayedevents keeps the events users schedule to be sent later (MSC4140,
// "Cancellable delayed events"), which MatrixRTC clients use as a dead man's switch: a
// call membership's "leave" is scheduled, restarted while the client is alive, and sent by
// the server when the client stops restarting it.
//
// The delayed events are rows of the delayed_events table; one scheduler goroutine keeps
// their send times in a heap and sleeps until the next one (no polling of the database per
// event). Every 30 seconds one query picks up what is due soon and not queued here: what
// another process scheduled or restarted, should that process die before sending it.
// A due event is claimed (status sending) in one transaction, sent through the roomserver
// with the transaction ID "delayed.<delay_id>", and marked sent in another: a crash between
// the two leaves it claimed, and at start-up it is sent again with the same transaction
// ID, for which the roomserver returns the event of the first send. So each delayed event
// becomes at most one room event, and none is lost; a restart keeps the remaining delays.
//
// It must not import the HTTP packages (clientapi, syncapi, federationapi,
// internal/httputil): its errors carry their status for clientapi to write.
package delayedevents

import (
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// Rooms sends the events of delayed events.
type Rooms interface {
	SendDelayed(ctx context.Context, from roomserver.Sender, roomID, evType string, stateKey *string, content json.RawMessage, delayID string, stickyMS *int64) (string, error)
}

// Error is a client error with a status the Matrix error codes do not imply: 400 for a
// delay over the maximum (with max_delay), 409 for an action that conflicts with how the
// delayed event was finalised.
type Error struct {
	Status int
	Code   string
	Msg    string
	Extra  map[string]any
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

// keepFinalised is how long finalised delayed events stay listed (MSC4140 recommends up to
// seven days).
const keepFinalised = 7 * 24 * time.Hour

// maxConcurrentSends bounds the due events sent at the same time.
const maxConcurrentSends = 16

// retryAfter is when a delayed event whose send failed for an internal reason (the
// database, not the client's event) is tried again.
const retryAfter = 5 * time.Second

// rescanEvery is how often the scheduler reads the delayed events due soon from the
// database, to pick up those that another process scheduled or restarted and could not
// send (it died): one query per period, however many delayed events there are.
const rescanEvery = 30 * time.Second

// Service schedules, manages and sends delayed events.
type Service struct {
	cfg   config.DelayedEvents
	db    *storage.DB
	rooms Rooms
	log   *slog.Logger
	now   func() time.Time

	mu       sync.Mutex          // guards queue, latest and inFlight
	queue    dueHeap             // send times of the delayed events not yet finalised (some stale)
	latest   map[string]int64    // delay ID -> its latest queued send time; older entries are stale
	inFlight map[string]struct{} // delay IDs being sent by the scheduler
	rescan   time.Duration       // rescanEvery; shorter in tests

	wake   chan struct{} // a send time earlier than the timer's was queued
	sends  chan struct{} // semaphore of the sends in flight
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the scheduler and the sends in flight
}

// New returns the delayed events service; Start starts its scheduler.
func New(cfg config.DelayedEvents, db *storage.DB, rooms Rooms, log *slog.Logger) *Service {
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{cfg: cfg, db: db, rooms: rooms, log: log, now: time.Now, latest: map[string]int64{},
		inFlight: map[string]struct{}{}, rescan: rescanEvery,
		wake: make(chan struct{}, 1), sends: make(chan struct{}, maxConcurrentSends), ctx: ctx, cancel: cancel}
}

// Start loads the delayed events not yet finalised and starts the scheduler, which sends
// the overdue ones at once.
func (s *Service) Start(ctx context.Context) error {
	n, err := s.load(ctx, math.MaxInt64)
	if err != nil {
		return err
	}
	if n > 0 {
		s.log.Info("delayed events scheduled", "count", n)
	}
	s.wg.Add(2)
	go s.run()
	go s.rescanLoop()
	return nil
}

// load queues the delayed events due at or before before that are not queued here with
// their current send time, nor being sent here, and returns how many it queued.
func (s *Service) load(ctx context.Context, before int64) (int, error) {
	pending, err := s.db.PendingDelayedEvents(ctx, before)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range pending {
		s.mu.Lock()
		_, sending := s.inFlight[p.DelayID]
		at, queued := s.latest[p.DelayID]
		s.mu.Unlock()
		if sending || (queued && (at == p.SendTS || p.SendTS == 0)) {
			continue
		}
		s.push(p.DelayID, p.SendTS)
		n++
	}
	return n, nil
}

// rescanLoop queues, every rescan period, the delayed events due before the next one that
// this process does not know of.
func (s *Service) rescanLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.rescan)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.load(s.ctx, s.now().Add(s.rescan).UnixMilli()); err != nil && s.ctx.Err() == nil {
			s.log.Error("delayed events not read", "err", err)
		}
	}
}

// Close stops the scheduler and waits for the sends in flight.
func (s *Service) Close() error {
	s.cancel()
	s.wg.Wait()
	return nil
}

// Schedule schedules an event of from to be sent into roomID after delayMS and returns its
// delay ID. stateKey is nil for a message event. A repeated txnID (not empty) of the same
// device returns the delay ID of the first request.
func (s *Service) Schedule(ctx context.Context, from roomserver.Sender, roomID, evType string, stateKey *string, content json.RawMessage, delayMS int64, txnID string) (string, error) {
	return s.schedule(ctx, from, roomID, evType, stateKey, content, delayMS, txnID, nil)
}

// ScheduleSticky schedules a message event like Schedule, to be sent sticky for stickyMS
// milliseconds (MSC4354): stickiness starts when the event is sent.
func (s *Service) ScheduleSticky(ctx context.Context, from roomserver.Sender, roomID, evType string, content json.RawMessage, delayMS int64, txnID string, stickyMS int64) (string, error) {
	return s.schedule(ctx, from, roomID, evType, nil, content, delayMS, txnID, &stickyMS)
}

func (s *Service) schedule(ctx context.Context, from roomserver.Sender, roomID, evType string, stateKey *string, content json.RawMessage, delayMS int64, txnID string, stickyMS *int64) (string, error) {
	maxDelay := s.cfg.MaxDelay.Milliseconds()
	if delayMS <= 0 {
		return "", spec.InvalidParam("the delay must be a positive number of milliseconds")
	}
	if delayMS > maxDelay {
		// The unstable form that Synapse answers and matrix-js-sdk's MatrixRTC reads to retry
		// with the maximum: M_UNKNOWN, with the MSC's code and maximum under prefixed keys.
		return "", &Error{Status: 400, Code: "M_UNKNOWN", Msg: "the requested delay exceeds the allowed maximum",
			Extra: map[string]any{"org.matrix.msc4140.errcode": "M_MAX_DELAY_EXCEEDED",
				"org.matrix.msc4140.max_delay": maxDelay, "max_delay": maxDelay}}
	}
	now := s.now().UnixMilli()
	d := &storage.DelayedEvent{DelayID: rand.Text(), UserID: from.UserID, DeviceID: from.DeviceID, RoomID: roomID,
		Type: evType, StateKey: stateKey, Content: content, DelayMS: delayMS, RunningSince: now, SendTS: now + delayMS, TxnID: txnID, StickyMS: stickyMS}
	ok, next, err := s.db.InsertDelayedEvent(ctx, d, s.cfg.MaxPerUser, now-keepFinalised.Milliseconds())
	if err != nil {
		return "", err
	}
	if !ok {
		return "", spec.LimitExceededError{
			MatrixError:  spec.MatrixError{ErrCode: spec.ErrorLimitExceeded, Err: "the maximum number of delayed events has been reached"},
			RetryAfterMS: max(next-now, 1000),
		}
	}
	s.push(d.DelayID, d.SendTS)
	return d.DelayID, nil
}

// forget drops a delayed event's queued send time (it was cancelled here); a restart or a
// cancel through another process is caught by the claim instead.
func (s *Service) forget(id string) {
	s.mu.Lock()
	delete(s.latest, id)
	s.mu.Unlock()
}

// push queues a send time, waking the scheduler when it is the earliest.
func (s *Service) push(id string, at int64) {
	s.mu.Lock()
	heap.Push(&s.queue, due{id: id, at: at})
	s.latest[id] = at
	first := s.queue[0].id == id
	s.mu.Unlock()
	if first {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// run is the scheduler: it sleeps until the earliest send time and sends what is due.
func (s *Service) run() {
	defer s.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := s.now().UnixMilli()
		var dueIDs []string
		next := int64(math.MaxInt64)
		s.mu.Lock()
		for len(s.queue) > 0 && s.queue[0].at <= now {
			d := heap.Pop(&s.queue).(due)
			if at, ok := s.latest[d.id]; !ok || at != d.at {
				continue // restarted (a later entry is queued) or cancelled since
			}
			delete(s.latest, d.id)
			s.inFlight[d.id] = struct{}{}
			dueIDs = append(dueIDs, d.id)
		}
		if len(s.queue) > 0 {
			next = s.queue[0].at
		}
		s.mu.Unlock()
		for _, id := range dueIDs {
			select {
			case s.sends <- struct{}{}:
			case <-s.ctx.Done():
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() { <-s.sends }()
				s.sendDue(id)
				s.mu.Lock()
				delete(s.inFlight, id)
				s.mu.Unlock()
			}()
		}
		wait := time.Hour
		if next != math.MaxInt64 {
			wait = time.Duration(next-s.now().UnixMilli()) * time.Millisecond
		}
		timer.Reset(max(wait, 0))
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
			// Since Go 1.23 a stopped or reset timer delivers no stale tick: no drain.
			timer.Stop()
		case <-timer.C:
		}
	}
}

// sendDue sends a delayed event whose time came, unless it was cancelled, restarted or sent
// since it was queued (the claim then finds nothing).
func (s *Service) sendDue(id string) {
	d, err := s.db.ClaimDelayedEvent(s.ctx, id, s.now().UnixMilli())
	if errors.Is(err, storage.ErrNotFound) {
		return
	} else if err != nil {
		s.log.Error("delayed event not claimed", "delay_id", id, "err", err)
		s.retry(id)
		return
	}
	if err := s.send(s.ctx, d, "delay"); err != nil {
		s.retry(id)
	}
}

// retry queues a claimed delayed event again after an internal failure.
func (s *Service) retry(id string) {
	if s.ctx.Err() == nil {
		s.push(id, s.now().Add(retryAfter).UnixMilli())
	}
}

// send sends the claimed delayed event d and finalises it. A client error (the event is no
// longer allowed, or invalid) finalises it with that error when its time came (reason
// delay) and is returned, leaving it scheduled, for the send action (reason action). Other
// errors leave it claimed, to be tried again.
func (s *Service) send(ctx context.Context, d *storage.DelayedEvent, reason string) error {
	from := roomserver.Sender{UserID: d.UserID, DeviceID: d.DeviceID}
	eventID, err := s.rooms.SendDelayed(ctx, from, d.RoomID, d.Type, d.StateKey, d.Content, d.DelayID, d.StickyMS)
	now := s.now().UnixMilli()
	if err == nil {
		return s.db.FinishDelayedEvent(context.WithoutCancel(ctx), d.DelayID, storage.DelayedSent, reason, eventID, nil, now)
	}
	errJSON, client := clientError(err)
	if !client {
		s.log.Error("delayed event not sent", "delay_id", d.DelayID, "room_id", d.RoomID, "user_id", d.UserID, "err", err)
		return err
	}
	if reason == "action" {
		if uerr := s.db.UnclaimDelayedEvent(context.WithoutCancel(ctx), d.DelayID); uerr != nil {
			return uerr
		}
		return err
	}
	s.log.Info("delayed event refused", "delay_id", d.DelayID, "room_id", d.RoomID, "user_id", d.UserID, "err", err)
	if ferr := s.db.FinishDelayedEvent(context.WithoutCancel(ctx), d.DelayID, storage.DelayedError, reason, "", errJSON, now); ferr != nil {
		return ferr
	}
	return nil
}

// clientError returns err as the JSON of a Matrix error when it is one the client caused.
func clientError(err error) ([]byte, bool) {
	var me spec.MatrixError
	var le spec.LimitExceededError
	var ie *spec.InternalServerError
	switch {
	case errors.As(err, &le):
		b, _ := json.Marshal(le.MatrixError)
		return b, true
	case errors.As(err, &ie):
		return nil, false
	case errors.As(err, &me):
		b, _ := json.Marshal(me)
		return b, true
	}
	return nil, false
}

// due is a delayed event's place in the queue.
type due struct {
	id string
	at int64 // send time, Unix ms
}

// dueHeap is a min-heap of send times.
type dueHeap []due

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(due)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
