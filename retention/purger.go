// Package retention deletes old room history: the purges that the admin API's purge_history
// starts (Purger), and the message retention job (Job) that purges each room's messages
// older than its m.room.retention policy (MSC1763, as Synapse's message retention policies).
//
// A purge runs in the background in small transactions (storage.RunPurge) and holds no room
// lock, so that the room stays usable while it runs; its status is a table row, so that a
// restart resumes it. It must not import the HTTP packages (clientapi, syncapi,
// federationapi, mediaapi, internal/httputil): what it needs of the media repository it
// declares as MediaDeleter.
package retention

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/lattice-chat/lattice/storage"
)

// ErrInProgress is returned by Begin when the room has a purge running already.
var ErrInProgress = errors.New("a purge of this room's history is in progress")

// batchSize is how many events a purge transaction handles: small enough that the room's
// writers never wait long behind it.
const batchSize = 500

// Purger runs purges of room history.
type Purger struct {
	db          *storage.DB
	localSuffix string
	log         *slog.Logger
	now         func() time.Time

	ctx    context.Context // ends with Close: every running purge stops (and resumes on restart)
	cancel context.CancelFunc
	wg     sync.WaitGroup // the running purges
}

// NewPurger returns a purger for the server serverName.
func NewPurger(db *storage.DB, serverName string, log *slog.Logger) *Purger {
	ctx, cancel := context.WithCancel(context.Background())
	return &Purger{db: db, localSuffix: ":" + serverName, log: log, now: time.Now, ctx: ctx, cancel: cancel}
}

// Start resumes the purges that a restart cut short.
func (p *Purger) Start(ctx context.Context) error {
	active, err := p.db.ActivePurges(ctx)
	if err != nil {
		return err
	}
	for _, pg := range active {
		p.log.Info("resuming purge of room history", "room_id", pg.RoomID, "purge_id", pg.ID)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			_, _ = p.run(pg)
		}()
	}
	return nil
}

// Close stops the running purges, which resume at the next Start, and waits for them.
func (p *Purger) Close() error {
	p.cancel()
	p.wg.Wait()
	return nil
}

// Begin records a purge of the room's events with depth below beforeDepth (up to the newest
// event now) and starts it in the background; it returns the purge ID, or ErrInProgress.
func (p *Purger) Begin(ctx context.Context, room *storage.Room, beforeDepth int64, deleteLocal bool) (string, error) {
	pg, err := p.record(ctx, room, beforeDepth, deleteLocal)
	if err != nil {
		return "", err
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_, _ = p.run(pg)
	}()
	return pg.ID, nil
}

// Purge records a purge and runs it to its end; ErrInProgress if the room has one running.
func (p *Purger) Purge(ctx context.Context, room *storage.Room, beforeDepth int64, deleteLocal bool) (storage.PurgeResult, error) {
	pg, err := p.record(ctx, room, beforeDepth, deleteLocal)
	if err != nil {
		return storage.PurgeResult{}, err
	}
	return p.run(pg)
}

func (p *Purger) record(ctx context.Context, room *storage.Room, beforeDepth int64, deleteLocal bool) (*storage.Purge, error) {
	upTo, err := p.db.MaxEventNID(ctx)
	if err != nil {
		return nil, err
	}
	pg := &storage.Purge{ID: randomID(), RoomID: room.RoomID, RoomNID: room.NID, Status: storage.PurgeActive,
		BeforeDepth: beforeDepth, UpToNID: upTo, DeleteLocal: deleteLocal, CreatedTS: p.now().UnixMilli()}
	if err := p.db.InsertPurge(ctx, *pg); errors.Is(err, storage.ErrConflict) {
		return nil, ErrInProgress
	} else if err != nil {
		return nil, err
	}
	return pg, nil
}

// run carries out a recorded purge and records how it ended. Cut short by Close, it stays
// active, to be resumed.
func (p *Purger) run(pg *storage.Purge) (storage.PurgeResult, error) {
	started := p.now()
	res, err := p.db.RunPurge(p.ctx, pg, p.localSuffix, batchSize, p.pause)
	if err != nil && p.ctx.Err() != nil {
		return res, err
	}
	errText := ""
	if err != nil {
		p.log.Error("purge of room history failed", "room_id", pg.RoomID, "purge_id", pg.ID, "err", err)
		errText = "purge failed: internal error"
	} else {
		p.log.Info("purged room history", "room_id", pg.RoomID, "purge_id", pg.ID,
			"deleted", res.Deleted, "kept_as_outliers", res.Kept, "duration", p.now().Sub(started))
	}
	// The purge ended: record it even as the server stops.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ferr := p.db.FinishPurge(ctx, pg.ID, errText, p.now().UnixMilli()); ferr != nil {
		p.log.Error("record end of purge", "purge_id", pg.ID, "err", ferr)
	}
	return res, err
}

// pause waits after a batch that took d, for half as long (at most 100ms), so that the
// writers queued behind the batch (the room's new events) go first: a purge holds the
// database's writer at most two thirds of the time.
func (p *Purger) pause(d time.Duration) {
	select {
	case <-time.After(min(d/2, 100*time.Millisecond)):
	case <-p.ctx.Done():
	}
}

// randomID returns a purge ID: 16 random letters, as Synapse's.
func randomID() string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b)
}
