package syncapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/roomserver"
)

// Simplified Sliding Sync, MSC4186: POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync,
// the sync Element X (matrix-rust-sdk) uses. The client names lists of rooms (filters and
// ranges into the user's rooms ordered by recent activity) and room subscriptions; the server
// returns the rooms that match and are new to the connection or changed since its last
// response, and the extensions (to-device, e2ee, account data, receipts, typing). What the
// client already has is per-connection state held in memory (slidingsync_conn.go); a pos the
// server does not know gets M_UNKNOWN_POS and the client starts again. The files:
// slidingsync.go (request, response, long-poll), slidingsync_conn.go (connections),
// slidingsync_lists.go (room lists, bump stamps), slidingsync_room.go (a room's data),
// slidingsync_state.go (required_state), slidingsync_ext.go (extensions).

// maxSlidingLists bounds the lists of one request (the MSC's "Max lists: 100").
const maxSlidingLists = 100

// slidingRequest is the request body; pos and timeout may also come as query parameters
// (matrix-rust-sdk sends them there).
type slidingRequest struct {
	ConnID            string                   `json:"conn_id"`
	TxnID             string                   `json:"txn_id"`
	Pos               string                   `json:"pos"`
	Timeout           *int64                   `json:"timeout"`
	SetPresence       string                   `json:"set_presence"`
	Lists             map[string]slidingList   `json:"lists"`
	RoomSubscriptions map[string]roomConfig    `json:"room_subscriptions"`
	Extensions        *slidingExtensionsConfig `json:"extensions"`
}

// roomConfig is the MSC's room config: how many timeline events and which state.
type roomConfig struct {
	TimelineLimit int           `json:"timeline_limit"`
	RequiredState requiredState `json:"required_state"`
}

// merge combines two room configs into their superset.
func (c roomConfig) merge(o roomConfig) roomConfig {
	return roomConfig{TimelineLimit: max(c.TimelineLimit, o.TimelineLimit), RequiredState: c.RequiredState.merge(o.RequiredState)}
}

// slidingList is a SyncListConfig. Ranges is matrix-rust-sdk's form; Range the MSC's.
type slidingList struct {
	roomConfig
	Ranges  [][2]int64      `json:"ranges"`
	Range   *[2]int64       `json:"range"`
	Filters *slidingFilters `json:"filters"`
}

// slidingFilters is a SlidingRoomFilter. IsInvite is matrix-rust-sdk's name for is_invited.
type slidingFilters struct {
	IsDM         *bool      `json:"is_dm"`
	IsEncrypted  *bool      `json:"is_encrypted"`
	IsInvited    *bool      `json:"is_invited"`
	IsInvite     *bool      `json:"is_invite"`
	RoomTypes    *[]*string `json:"room_types"`
	NotRoomTypes []*string  `json:"not_room_types"`
	Tags         []string   `json:"tags"`
	NotTags      []string   `json:"not_tags"`
	Spaces       []string   `json:"spaces"`
}

// slidingResponse is the response body.
type slidingResponse struct {
	TxnID      string                       `json:"txn_id,omitempty"`
	Pos        string                       `json:"pos"`
	Lists      map[string]slidingListResult `json:"lists"`
	Rooms      map[string]*slidingRoom      `json:"rooms"`
	Extensions slidingExtensions            `json:"extensions"`

	listsChanged bool // a list's count differs from the connection's last response
}

type slidingListResult struct {
	Count int `json:"count"`
}

// slidingRoom is a RoomResult. Omitted fields are unchanged (initial false) or unset
// (initial true).
type slidingRoom struct {
	Name              json.RawMessage          `json:"name,omitempty"`
	Avatar            json.RawMessage          `json:"avatar,omitempty"`
	Heroes            []slidingHero            `json:"heroes,omitempty"`
	IsDM              *bool                    `json:"is_dm,omitempty"`
	Initial           bool                     `json:"initial,omitempty"`
	ExpandedTimeline  bool                     `json:"expanded_timeline,omitempty"`
	Membership        string                   `json:"membership,omitempty"`
	Lists             []string                 `json:"lists,omitempty"`
	RequiredState     []any                    `json:"required_state,omitempty"`
	Timeline          []roomserver.ClientEvent `json:"timeline,omitempty"`
	PrevBatch         string                   `json:"prev_batch,omitempty"`
	Limited           bool                     `json:"limited,omitempty"`
	NumLive           *int                     `json:"num_live,omitempty"`
	JoinedCount       *int                     `json:"joined_count,omitempty"`
	InvitedCount      *int                     `json:"invited_count,omitempty"`
	NotificationCount *int                     `json:"notification_count,omitempty"`
	HighlightCount    *int                     `json:"highlight_count,omitempty"`
	BumpStamp         *int64                   `json:"bump_stamp,omitempty"`
	// InviteState is matrix-rust-sdk's name for an invite's stripped state; StrippedState the
	// MSC's, for invites and knocks.
	InviteState   []any `json:"invite_state,omitempty"`
	StrippedState []any `json:"stripped_state,omitempty"`
}

type slidingHero struct {
	UserID      string `json:"user_id"`
	DisplayName string `json:"displayname,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

// empty reports whether the response has nothing new (and so a long-poll waits).
func (r *slidingResponse) empty() bool {
	return len(r.Rooms) == 0 && !r.listsChanged && r.Extensions.empty()
}

// handleSlidingSync handles POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync.
// A request with a pos and nothing new waits up to timeout milliseconds for the notifier.
func (s *Server) handleSlidingSync(r *http.Request) (any, error) {
	dev := httputil.Device(r.Context())
	req, err := parseSlidingRequest(r)
	if err != nil {
		return nil, err
	}
	timeout := time.Duration(0)
	if req.Timeout != nil {
		timeout = min(time.Duration(*req.Timeout)*time.Millisecond, s.maxTimeout)
	}
	if setPresence := req.SetPresence; !setPresenceParam(setPresence) {
		return nil, spec.InvalidParam("set_presence must be online, unavailable or offline")
	} else if s.presence != nil {
		defer s.presence.Syncing(r.Context(), dev.UserID, setPresence)()
	}
	key := connKey{userID: dev.UserID, deviceID: dev.DeviceID, connID: req.ConnID}
	base, err := s.beginSliding(r.Context(), key, req.Pos)
	if err != nil {
		return nil, err
	}
	if err := s.notifier.CatchUp(r.Context()); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for {
		// Read each time round: a change of the ignore list applies at once.
		viewer := s.viewer(r.Context(), dev)
		ch, to, stop := s.notifier.listen(dev.UserID)
		resp, next, err := s.buildSliding(r.Context(), viewer, req, base, to)
		if err != nil {
			stop()
			return nil, err
		}
		remaining := time.Until(deadline)
		if base.pos == 0 || !resp.empty() || remaining <= 0 {
			stop()
			resp.Pos, resp.TxnID = s.sliding.commit(key, next), req.TxnID
			return resp, s.writeThrough(r.Context(), key, next)
		}
		// Nothing new for this user: wait for a change, then build again from the same base.
		woken := s.notifier.wait(r.Context(), ch, remaining)
		stop()
		if r.Context().Err() != nil {
			// The client went away (matrix-rust-sdk cancels a long-poll to change its
			// request): nobody reads this answer, so no position is stored for it.
			return nil, spec.MatrixError{ErrCode: "M_UNKNOWN", Err: "the request was cancelled"}
		}
		if !woken {
			resp.Pos, resp.TxnID = s.sliding.commit(key, next), req.TxnID
			return resp, s.writeThrough(r.Context(), key, next)
		}
	}
}

// parseSlidingRequest decodes and checks the body and the query parameters.
func parseSlidingRequest(r *http.Request) (slidingRequest, error) {
	var req slidingRequest
	body, err := httputil.ReadBody(r)
	if err != nil {
		return req, err
	}
	if len(body) > 0 {
		if err := httputil.UnmarshalObject(body, &req); err != nil {
			return req, err
		}
	}
	q := r.URL.Query()
	if pos := q.Get("pos"); pos != "" {
		req.Pos = pos
	}
	if t := q.Get("timeout"); t != "" {
		ms, err := strconv.ParseInt(t, 10, 64)
		if err != nil {
			return req, spec.InvalidParam("timeout must be a non-negative integer")
		}
		req.Timeout = &ms
	}
	if req.Timeout != nil && *req.Timeout < 0 {
		return req, spec.InvalidParam("timeout must be a non-negative integer")
	}
	if sp := q.Get("set_presence"); sp != "" {
		req.SetPresence = sp
	}
	if len(req.Lists) > maxSlidingLists {
		return req, spec.InvalidParam("too many lists")
	}
	for name, l := range req.Lists {
		if err := l.check(); err != nil {
			return req, spec.InvalidParam("list " + name + ": " + err.Error())
		}
		if l.Range != nil {
			l.Ranges = append(l.Ranges, *l.Range)
			req.Lists[name] = l
		}
	}
	for roomID, c := range req.RoomSubscriptions {
		if c.TimelineLimit < 0 {
			return req, spec.InvalidParam("room subscription " + roomID + ": timeline_limit must not be negative")
		}
		if err := c.RequiredState.check(); err != nil {
			return req, spec.InvalidParam("room subscription " + roomID + ": " + err.Error())
		}
	}
	return req, nil
}

type slidingError string

func (e slidingError) Error() string { return string(e) }

// check validates a list's ranges and timeline limit.
func (l slidingList) check() error {
	if l.TimelineLimit < 0 {
		return slidingError("timeline_limit must not be negative")
	}
	if err := l.RequiredState.check(); err != nil {
		return err
	}
	ranges := l.Ranges
	if l.Range != nil {
		ranges = append(ranges, *l.Range)
	}
	for _, rg := range ranges {
		if rg[0] < 0 || rg[1] < rg[0] {
			return slidingError("a range must be [start, end] with 0 <= start <= end")
		}
	}
	return nil
}

// ownReceiptsMoved marks the matched joined rooms the connection has whose unread counts
// may have changed with no new event: the user's own read receipt moved (another device read
// the room) after the counts the connection has. One query, from the oldest of those counts;
// none while the receipts stream stands still.
func (s *Server) ownReceiptsMoved(ctx context.Context, userID string, base *connState, sel *roomSelection, to Token) error {
	from := to.Receipts
	for _, c := range sel.rooms {
		if prev, ok := base.rooms[c.m.RoomID]; ok && c.m.Membership == spec.Join && prev.membership == spec.Join {
			from = min(from, prev.countsReceipts)
		}
	}
	if from >= to.Receipts {
		return nil
	}
	moved, err := s.db.OwnReadReceiptsSince(ctx, userID, from, to.Receipts)
	if err != nil {
		return err
	}
	for _, c := range sel.rooms {
		if pos, ok := moved[c.m.RoomNID]; ok && c.m.Membership == spec.Join && pos > base.rooms[c.m.RoomID].countsReceipts {
			c.readMoved = true
		}
	}
	return nil
}

// buildSliding assembles the response for the changes after the connection state base, up
// to the stream positions to, and returns the connection state after it.
func (s *Server) buildSliding(ctx context.Context, viewer roomserver.Viewer, req slidingRequest, base *connState, to Token) (*slidingResponse, *connState, error) {
	sel := &roomSelection{counts: map[string]int{}, listRooms: map[string][]string{}, subbed: map[string]bool{}}
	if len(req.Lists) > 0 || len(req.RoomSubscriptions) > 0 {
		// A connection with neither (one for to-device messages and keys only) looks at no room.
		memberships, err := s.db.AllMemberships(ctx, viewer.UserID)
		if err != nil {
			return nil, nil, err
		}
		// A membership committed after the notifier's position was read is included now
		// rather than half-seen (as /sync does).
		for _, m := range memberships {
			to.PDU = max(to.PDU, m.EventNID)
		}
		if sel, err = s.selectRooms(ctx, viewer, req, base, memberships, to); err != nil {
			return nil, nil, err
		}
	}
	next := base.clone()
	next.to = to
	resp := &slidingResponse{Lists: map[string]slidingListResult{}, Rooms: map[string]*slidingRoom{}}
	for name, count := range sel.counts {
		resp.Lists[name] = slidingListResult{Count: count}
		if prev, ok := base.lists[name]; !ok || prev != count {
			resp.listsChanged = true
		}
	}
	next.lists = sel.counts
	if err := s.ownReceiptsMoved(ctx, viewer.UserID, base, sel, to); err != nil {
		return nil, nil, err
	}
	for _, c := range sel.rooms {
		room, sent, err := s.slidingRoomResult(ctx, viewer, base, c, to)
		if err != nil {
			return nil, nil, err
		}
		if room != nil {
			resp.Rooms[c.m.RoomID] = room
			next.rooms[c.m.RoomID] = sent
		}
		if r, ok := next.rooms[c.m.RoomID]; ok && c.m.Membership == spec.Join {
			r.countsReceipts = to.Receipts // sent now, or unchanged up to to
			next.rooms[c.m.RoomID] = r
		}
	}
	if err := s.slidingExtensions(ctx, viewer, req, base, next, sel, resp, to); err != nil {
		return nil, nil, err
	}
	return resp, next, nil
}

// writeThrough, in a cluster (SetCluster), writes the connection's new state before the
// response goes out; otherwise it does nothing (the state is written behind).
func (s *Server) writeThrough(ctx context.Context, key connKey, next *connState) error {
	if !s.cluster {
		return nil
	}
	s.sliding.mu.Lock()
	st := s.sliding.store
	s.sliding.mu.Unlock()
	if st == nil {
		return nil
	}
	return st.writeThrough(ctx, key, next)
}
