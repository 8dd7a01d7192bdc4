package appservice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// Transaction sizes and the backoff of a failing service (Application Service API,
// "Pushing events": the homeserver SHOULD back off exponentially).
const (
	batchEvents = 100
	minBackoff  = 250 * time.Millisecond
	maxBackoff  = 5 * time.Minute
	// coalesce is how long a woken sender waits so that one read serves a burst of commits.
	coalesce = 10 * time.Millisecond
)

// sender pushes one service's transactions, in order, one at a time. The queue is the room
// event stream itself after the service's position plus the transactions already built
// (appservice_txns): a service that is down only falls behind, and slows nobody else.
type sender struct {
	s    *Server
	svc  *Service
	wake chan struct{} // buffered (1): a pending wake-up

	// For metrics: transactions and events delivered, failed attempts.
	sentTxns, sentEvents, failures atomic.Int64

	// ephDirty says typing or receipts changed since the last look. The positions in those
	// streams are the sender goroutine's own: ephemeral data is not kept across restarts.
	ephDirty                            atomic.Bool
	typingPos, receiptsPos, presencePos int64
	nextPresencePos                     int64 // where presencePos moves once a build commits

	cancel context.CancelFunc // stops run (Reload)
	done   chan struct{}      // closed when run has returned

	// e2eeDirty says the to_device or device_lists stream moved since the last look (set at
	// start: the positions are kept in the database, with the transactions).
	e2eeDirty atomic.Bool
}

func newSender(s *Server, svc *Service) *sender {
	snd := &sender{s: s, svc: svc, wake: make(chan struct{}, 1)}
	snd.e2eeDirty.Store(true)
	return snd
}

func (snd *sender) wakeUp() {
	select {
	case snd.wake <- struct{}{}:
	default:
	}
}

// run sends transactions until ctx ends: first those already built (a previous run's too),
// then new ones built from the events after the service's position.
func (snd *sender) run(ctx context.Context) {
	log := snd.s.log.With("appservice", snd.svc.ID)
	for ctx.Err() == nil {
		txn, err := snd.s.db.FirstAppServiceTxn(ctx, snd.svc.ID)
		if err == nil {
			snd.deliver(ctx, txn)
			continue
		}
		if errors.Is(err, storage.ErrNotFound) {
			var built bool
			if built, err = snd.build(ctx); err == nil && built {
				continue
			}
		}
		if err != nil {
			if ctx.Err() == nil {
				log.Error("application service queue", "err", err)
			}
			sleep(ctx, time.Second)
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-snd.wake:
		}
		sleep(ctx, coalesce)
	}
}

// build reads the events after the service's position and, if the service is interested
// in any, stores them as its next transaction; either way the position moves past them.
// It reports whether there were events.
func (snd *sender) build(ctx context.Context) (bool, error) {
	st, err := snd.s.db.AppServiceState(ctx, snd.svc.ID)
	if err != nil {
		return false, err
	}
	evs, err := snd.s.db.StreamEventsAfter(ctx, st.StreamPos, batchEvents)
	if err != nil {
		return false, err
	}
	wanted := map[string]bool{}
	var eph []map[string]any
	typingPos, receiptsPos := snd.typingPos, snd.receiptsPos
	if snd.svc.Ephemeral() && snd.ephDirty.Swap(false) {
		if eph, typingPos, receiptsPos, err = snd.ephemeral(ctx, wanted); err != nil {
			snd.ephDirty.Store(true)
			return false, err
		}
	}
	e2eeDirty := snd.svc.wantsToDevice() && snd.e2eeDirty.Swap(false)
	if len(evs) == 0 && !e2eeDirty && typingPos == snd.typingPos && receiptsPos == snd.receiptsPos && snd.nextPresencePos <= snd.presencePos {
		return false, nil
	}
	picked, err := snd.interesting(ctx, evs, wanted)
	if err != nil {
		if e2eeDirty {
			snd.e2eeDirty.Store(true)
		}
		return false, err
	}
	enc, err := snd.e2ee(ctx, e2eeDirty, picked)
	if err != nil {
		snd.e2eeDirty.Store(true)
		return false, err
	}
	if len(evs) == 0 && enc == nil && typingPos == snd.typingPos && receiptsPos == snd.receiptsPos && snd.nextPresencePos <= snd.presencePos {
		return false, nil
	}
	var body []byte
	if len(picked) > 0 || len(eph) > 0 || !enc.empty() {
		if body, err = snd.format(ctx, picked, eph, enc); err != nil {
			if e2eeDirty {
				snd.e2eeDirty.Store(true)
			}
			return false, err
		}
	}
	last := st.StreamPos
	if len(evs) > 0 {
		last = evs[len(evs)-1].NID
	}
	err = snd.s.db.WithTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.AdvanceAppService(ctx, snd.svc.ID, st.StreamPos, last, body, len(picked), time.Now().UnixMilli()); err != nil {
			return err
		}
		if enc != nil {
			return tx.SetAppServiceStreams(ctx, snd.svc.ID, enc.from, enc.to)
		}
		return nil
	})
	if err != nil {
		snd.ephDirty.Store(true)
		if e2eeDirty {
			snd.e2eeDirty.Store(true)
		}
		return false, err
	}
	snd.typingPos, snd.receiptsPos = typingPos, receiptsPos
	snd.presencePos = max(snd.presencePos, snd.nextPresencePos)
	return true, nil
}

// roomEvent is an event with its room's ID.
type roomEvent struct {
	ev     *storage.Event
	roomID string
}

// format returns the transaction body: {"events": [ClientEvent...]}, and the ephemeral
// data under its stable name and the unstable one of MSC2409, which bridges still read.
func (snd *sender) format(ctx context.Context, evs []roomEvent, eph []map[string]any, enc *e2eeData) ([]byte, error) {
	out := make([]roomserver.ClientEvent, 0, len(evs))
	for i := 0; i < len(evs); {
		// Runs of one room's events are formatted together.
		j := i + 1
		for j < len(evs) && evs[j].roomID == evs[i].roomID {
			j++
		}
		run := make([]*storage.Event, 0, j-i)
		for _, re := range evs[i:j] {
			run = append(run, re.ev)
		}
		ces, err := snd.s.rooms.ClientEvents(ctx, evs[i].roomID, run, roomserver.Viewer{})
		if err != nil {
			return nil, fmt.Errorf("format events: %w", err)
		}
		out = append(out, ces...)
		i = j
	}
	body := map[string]any{"events": out}
	if len(eph) > 0 {
		body["ephemeral"] = eph
		body["de.sorunome.msc2409.ephemeral"] = eph
	}
	addE2EE(body, enc)
	return json.Marshal(body)
}

// deliver sends a transaction until the service acknowledges it (a 2xx) or ctx ends,
// backing off exponentially; then removes it from the queue.
func (snd *sender) deliver(ctx context.Context, txn *storage.AppServiceTxn) {
	backoff := minBackoff
	for {
		err := snd.put(ctx, txn)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		snd.failures.Add(1)
		snd.s.log.Warn("application service transaction failed", "appservice", snd.svc.ID, "txn_id", txn.TxnID, "err", err, "retry_in", backoff)
		_ = snd.s.db.WithTx(ctx, func(tx *storage.Tx) error {
			return tx.SetAppServiceError(ctx, snd.svc.ID, err.Error(), time.Now().UnixMilli())
		})
		sleep(ctx, backoff)
		if ctx.Err() != nil {
			return
		}
		backoff = min(backoff*2, maxBackoff)
	}
	err := snd.s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.AckAppServiceTxn(ctx, snd.svc.ID, txn.TxnID) })
	if err != nil {
		// Sent again later under the same ID, which the service ignores as a repeat.
		snd.s.log.Error("application service transaction acknowledged but not removed", "appservice", snd.svc.ID, "txn_id", txn.TxnID, "err", err)
		sleep(ctx, time.Second)
		return
	}
	snd.sentTxns.Add(1)
	snd.sentEvents.Add(int64(txn.NumEvents))
}

// put makes one PUT /_matrix/app/v1/transactions/{txnId} request.
func (snd *sender) put(ctx context.Context, txn *storage.AppServiceTxn) error {
	url := snd.svc.endpoint("/_matrix/app/v1/transactions/" + strconv.FormatInt(txn.TxnID, 10))
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(withAge(txn.Body, time.Now().UnixMilli())))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+snd.svc.HSToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := snd.s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// withAge returns a stored transaction body with each event's unsigned.age computed now:
// the body was formatted when the transaction was built, maybe long before this attempt.
// Only age changes (a retry carries the same events); a body it cannot read is sent as is.
func withAge(body []byte, now int64) []byte {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil || len(top["events"]) == 0 {
		return body
	}
	var evs []map[string]json.RawMessage
	if json.Unmarshal(top["events"], &evs) != nil {
		return body
	}
	for _, ev := range evs {
		var ts int64
		if json.Unmarshal(ev["origin_server_ts"], &ts) != nil {
			continue
		}
		unsigned := map[string]json.RawMessage{}
		if raw, ok := ev["unsigned"]; ok && json.Unmarshal(raw, &unsigned) != nil {
			continue
		}
		unsigned["age"] = json.RawMessage(strconv.FormatInt(max(now-ts, 0), 10))
		raw, err := json.Marshal(unsigned)
		if err != nil {
			return body
		}
		ev["unsigned"] = raw
	}
	raw, err := json.Marshal(evs)
	if err != nil {
		return body
	}
	top["events"] = raw
	out, err := json.Marshal(top)
	if err != nil {
		return body
	}
	return out
}

// endpoint returns the URL of a path of the service's API.
func (s *Service) endpoint(path string) string {
	return strings.TrimRight(*s.URL, "/") + path
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
