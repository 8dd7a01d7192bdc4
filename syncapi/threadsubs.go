package syncapi

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// Thread subscription changes (MSC4308): sliding sync's thread subscriptions extension and
// the companion endpoint that pages back through the changes the extension left out. The
// subscriptions (MSC4306) are written by the client API with positions of the account data
// stream, so the extension reads the same window of that stream as the account data one.

const (
	defaultThreadSubsLimit = 100
	maxThreadSubsLimit     = 1000
)

// threadSubsConfig is the extension's request config. MSC4308: "enabled" must be given and
// true to turn the extension on; what a request leaves out carries on from the connection.
type threadSubsConfig struct {
	Enabled *bool `json:"enabled"`
	Limit   *int  `json:"limit"`
}

func (c *threadSubsConfig) on() bool { return c != nil && c.Enabled != nil && *c.Enabled }

func (c *threadSubsConfig) sticky(prev *threadSubsConfig) *threadSubsConfig {
	if c == nil {
		return prev
	}
	out := *c
	if prev != nil {
		if out.Enabled == nil {
			out.Enabled = prev.Enabled
		}
		if out.Limit == nil {
			out.Limit = prev.Limit
		}
	}
	return &out
}

func (c *threadSubsConfig) limit() int {
	if c == nil || c.Limit == nil || *c.Limit <= 0 {
		return defaultThreadSubsLimit
	}
	return min(*c.Limit, maxThreadSubsLimit)
}

// threadSubsChanges is MSC4308's shape of a window of changes, in the extension and in the
// companion endpoint: room ID -> thread root -> {"automatic", "bump_stamp"} for threads
// subscribed, {"bump_stamp"} for threads unsubscribed. The bump stamp is the change's position
// in the account data stream: a later change of the same thread has a higher one.
type threadSubsChanges struct {
	Subscribed   map[string]map[string]subscribedThread   `json:"subscribed,omitempty"`
	Unsubscribed map[string]map[string]unsubscribedThread `json:"unsubscribed,omitempty"`
}

type subscribedThread struct {
	Automatic bool  `json:"automatic"`
	BumpStamp int64 `json:"bump_stamp"`
}

type unsubscribedThread struct {
	BumpStamp int64 `json:"bump_stamp"`
}

func (c *threadSubsChanges) empty() bool {
	return c == nil || len(c.Subscribed)+len(c.Unsubscribed) == 0
}

// threadSubsResult is the extension's result: the changes, and prev_batch (a from token of
// the companion endpoint) when older ones were left out.
type threadSubsResult struct {
	threadSubsChanges
	PrevBatch string `json:"prev_batch,omitempty"`
}

// threadSubsToken is a point in the changes for the companion endpoint: changes before it.
func threadSubsToken(pos int64) string { return "ts" + strconv.FormatInt(pos, 10) }

// changesByRoom groups changes (newest first, one per thread) for the response; a new
// connection is not told about subscriptions that ended.
func changesByRoom(changes []storage.ThreadSubscription, withEnded bool) threadSubsChanges {
	var out threadSubsChanges
	for _, c := range changes {
		switch {
		case c.Subscribed:
			if out.Subscribed == nil {
				out.Subscribed = map[string]map[string]subscribedThread{}
			}
			if out.Subscribed[c.RoomID] == nil {
				out.Subscribed[c.RoomID] = map[string]subscribedThread{}
			}
			out.Subscribed[c.RoomID][c.ThreadRoot] = subscribedThread{Automatic: c.Automatic, BumpStamp: c.StreamPos}
		case withEnded:
			if out.Unsubscribed == nil {
				out.Unsubscribed = map[string]map[string]unsubscribedThread{}
			}
			if out.Unsubscribed[c.RoomID] == nil {
				out.Unsubscribed[c.RoomID] = map[string]unsubscribedThread{}
			}
			out.Unsubscribed[c.RoomID][c.ThreadRoot] = unsubscribedThread{BumpStamp: c.StreamPos}
		}
	}
	return out
}

// slidingThreadSubscriptions returns the newest changes in (since, to], at most the
// config's limit, with a prev_batch when older ones were left out.
func (s *Server) slidingThreadSubscriptions(ctx context.Context, userID string, cfg *threadSubsConfig, since, to int64) (*threadSubsResult, error) {
	res := &threadSubsResult{}
	if to <= since {
		return res, nil
	}
	limit := cfg.limit()
	changes, err := s.db.ThreadSubscriptionChanges(ctx, userID, since, to+1, limit+1)
	if err != nil {
		return nil, err
	}
	if len(changes) > limit {
		changes = changes[:limit]
		res.PrevBatch = threadSubsToken(changes[limit-1].StreamPos)
	}
	res.threadSubsChanges = changesByRoom(changes, since > 0)
	return res, nil
}

// handleThreadSubscriptions handles MSC4308's
// GET /_matrix/client/unstable/io.element.msc4308/thread_subscriptions?dir=b&from&to&limit:
// the changes before from (or the newest) and after to (a token of this endpoint or a sliding
// sync pos of the requesting device), newest first; end when there are more.
func (s *Server) handleThreadSubscriptions(r *http.Request) (any, error) {
	dev := httputil.Device(r.Context())
	q := r.URL.Query()
	if q.Get("dir") != "b" {
		return nil, spec.InvalidParam("dir must be b")
	}
	limit := defaultThreadSubsLimit
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n <= 0 {
			return nil, spec.InvalidParam("limit must be a positive integer")
		}
		limit = min(n, maxThreadSubsLimit)
	}
	before := int64(math.MaxInt64)
	if from := q.Get("from"); from != "" {
		n, ok := parseThreadSubsToken(from)
		if !ok {
			return nil, spec.InvalidParam("unknown from token")
		}
		before = n
	}
	var after int64
	if to := q.Get("to"); to != "" {
		n, ok := parseThreadSubsToken(to)
		if !ok {
			if n, ok = s.sliding.accountDataAt(dev.UserID, dev.DeviceID, to); !ok {
				return nil, spec.InvalidParam("unknown to token")
			}
		}
		after = n
	}
	changes, err := s.db.ThreadSubscriptionChanges(r.Context(), dev.UserID, after, before, limit+1)
	if err != nil {
		return nil, err
	}
	var end string
	if len(changes) > limit {
		changes = changes[:limit]
		end = threadSubsToken(changes[limit-1].StreamPos)
	}
	return threadSubsPage{changesByRoom(changes, true), end}, nil
}

// threadSubsPage is the companion endpoint's response: the changes, and end (the next from)
// when there are more. subscribed and unsubscribed are always there.
type threadSubsPage struct {
	threadSubsChanges
	End string
}

func (p threadSubsPage) MarshalJSON() ([]byte, error) {
	out := struct {
		Subscribed   map[string]map[string]subscribedThread   `json:"subscribed"`
		Unsubscribed map[string]map[string]unsubscribedThread `json:"unsubscribed"`
		End          string                                   `json:"end,omitempty"`
	}{p.Subscribed, p.Unsubscribed, p.End}
	if out.Subscribed == nil {
		out.Subscribed = map[string]map[string]subscribedThread{}
	}
	if out.Unsubscribed == nil {
		out.Unsubscribed = map[string]map[string]unsubscribedThread{}
	}
	return json.Marshal(out)
}

func parseThreadSubsToken(t string) (int64, bool) {
	rest, ok := strings.CutPrefix(t, "ts")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	return n, err == nil && n >= 0
}

// accountDataAt returns the account data stream position of the state of one of the
// device's sliding sync connections at pos.
func (ss *slidingSync) accountDataAt(userID, deviceID, pos string) (int64, bool) {
	n, err := strconv.ParseInt(pos, 10, 64)
	if err != nil {
		return 0, false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for key, conn := range ss.conns {
		if key.userID == userID && key.deviceID == deviceID && conn.states[n] != nil {
			return conn.states[n].to.AccountData, true
		}
	}
	return 0, false
}
