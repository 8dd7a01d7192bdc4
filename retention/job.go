package retention

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/storage"
)

// MediaDeleter deletes this server's media (mediaapi.Server).
type MediaDeleter interface {
	DeleteLocalMedia(ctx context.Context, mediaID string) error
}

// Job is the message retention job: every purge interval it purges each room's events older
// than the room's max_lifetime, and the local media only those events referred to.
type Job struct {
	cfg        config.Retention
	serverName string
	db         *storage.DB
	purger     *Purger
	media      MediaDeleter // nil: media is left alone
	log        *slog.Logger
	now        func() time.Time
	paused     func() bool // SetPaused; nil: never

	stop context.CancelFunc // set by Start
	done chan struct{}      // closed when the job's goroutine ends
}

// New returns the retention job; it does nothing unless cfg.Enabled.
func New(cfg config.Retention, serverName string, db *storage.DB, purger *Purger, media MediaDeleter, log *slog.Logger) *Job {
	return &Job{cfg: cfg, serverName: serverName, db: db, purger: purger, media: media, log: log, now: time.Now}
}

// SetPaused makes the scheduled runs skip while paused returns true (an admin disabled
// background updates); set it before Start.
func (j *Job) SetPaused(paused func() bool) { j.paused = paused }

// Start runs the job every purge interval until Close.
func (j *Job) Start(ctx context.Context) error {
	if !j.cfg.Enabled {
		return nil
	}
	interval := j.cfg.PurgeInterval
	if interval <= 0 {
		interval = time.Hour
	}
	ctx, j.stop = context.WithCancel(ctx)
	j.done = make(chan struct{})
	go func() {
		defer close(j.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if j.paused != nil && j.paused() {
				j.log.Info("message retention skipped: background updates are disabled")
				continue
			}
			if err := j.RunOnce(ctx); err != nil && ctx.Err() == nil {
				j.log.Error("message retention", "err", err)
			}
		}
	}()
	return nil
}

// Close stops the job and waits for it.
func (j *Job) Close() error {
	if j.stop != nil {
		j.stop()
		<-j.done
	}
	return nil
}

// RunOnce purges every room's expired events once.
func (j *Job) RunOnce(ctx context.Context) error {
	rooms, err := j.db.KnownRoomIDs(ctx)
	if err != nil {
		return err
	}
	for nid, id := range rooms {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := j.purgeRoom(ctx, &storage.Room{NID: nid, RoomID: id}); err != nil {
			j.log.Error("message retention", "room_id", id, "err", err)
		}
	}
	return nil
}

func (j *Job) purgeRoom(ctx context.Context, room *storage.Room) error {
	lifetime, err := j.maxLifetime(ctx, room.NID)
	if err != nil || lifetime <= 0 {
		return err
	}
	depth, found, err := j.db.PurgeDepthAt(ctx, room.NID, j.now().Add(-lifetime).UnixMilli())
	if err != nil || !found {
		return err
	}
	res, err := j.purger.Purge(ctx, room, depth, true)
	if errors.Is(err, ErrInProgress) {
		return nil // the admin's purge goes first; the next run does the rest
	} else if err != nil {
		return err
	}
	return j.deleteMedia(ctx, res.Media)
}

// maxLifetime returns the room's max_lifetime: its m.room.retention event's, within the
// allowed bounds, else the default policy's (0: keep for ever).
func (j *Job) maxLifetime(ctx context.Context, roomNID int64) (time.Duration, error) {
	ev, err := j.db.CurrentStateEvent(ctx, roomNID, storage.StateKey{Type: "m.room.retention"})
	if errors.Is(err, storage.ErrNotFound) {
		return j.cfg.DefaultPolicy.MaxLifetime, nil
	} else if err != nil {
		return 0, err
	}
	var c struct {
		Content struct {
			MaxLifetime *json.Number `json:"max_lifetime"`
		} `json:"content"`
	}
	if json.Unmarshal(ev.JSON, &c) != nil || c.Content.MaxLifetime == nil {
		return j.cfg.DefaultPolicy.MaxLifetime, nil
	}
	ms, err := c.Content.MaxLifetime.Int64()
	if err != nil || ms <= 0 {
		return j.cfg.DefaultPolicy.MaxLifetime, nil
	}
	return clamp(time.Duration(ms)*time.Millisecond, j.cfg.AllowedLifetimeMin, j.cfg.AllowedLifetimeMax), nil
}

// clamp returns d within [lo, hi], where a zero bound is none.
func clamp(d, lo, hi time.Duration) time.Duration {
	if lo > 0 && d < lo {
		d = lo
	}
	if hi > 0 && d > hi {
		d = hi
	}
	return d
}

// deleteMedia deletes the local media among uris that no event or avatar refers to any more.
func (j *Job) deleteMedia(ctx context.Context, uris []string) error {
	if j.media == nil {
		return nil
	}
	prefix := "mxc://" + j.serverName + "/"
	for _, uri := range uris {
		mediaID, ok := strings.CutPrefix(uri, prefix)
		if !ok || strings.Contains(mediaID, "/") {
			continue
		}
		used, err := j.db.MediaReferenced(ctx, uri)
		if err != nil {
			return err
		}
		if used {
			continue
		}
		if err := j.media.DeleteLocalMedia(ctx, mediaID); err != nil {
			return err
		}
		j.log.Info("deleted expired media", "media_id", mediaID)
	}
	return nil
}
