package roomserver

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/roomserver/ownedstate"
	"github.com/lattice-chat/lattice/storage"
)

// Sender identifies who sends an event: the user and, for transaction IDs, the device.
type Sender struct {
	UserID   string
	DeviceID string
	// TS is the event's origin_server_ts when an application service set it (timestamp
	// massaging, ?ts=); 0 means now. Only SendMessage and SetState use it.
	TS int64
}

// sendJob is a message waiting in a room's queue.
type sendJob struct {
	req    eventRequest
	queued time.Time // when it joined the queue
	done   chan struct{}
	res    result
}

// maxBatch bounds how many queued messages commit in one transaction.
const maxBatch = 64

// SendMessage sends a message event; a repeated txnID from the same device returns the
// event ID of the first send and stores nothing new.
//
// Messages to one room queue up while the room is busy and are committed together, in
// order, in one transaction (one disk sync and one wake-up of /sync for the whole batch).
// The first sender to find nobody committing does the work for the queue.
func (s *Server) SendMessage(ctx context.Context, from Sender, roomID, evType string, content json.RawMessage, txnID string) (string, error) {
	req := eventRequest{Sender: from.UserID, Type: evType, Content: content, TxnDevice: from.DeviceID, TxnID: txnID, TS: from.TS}
	return s.sendMessage(ctx, roomID, req)
}

// sendMessage sends the message event req describes, as SendMessage explains.
func (s *Server) sendMessage(ctx context.Context, roomID string, req eventRequest) (string, error) {
	if req.Type == spec.MRoomRedaction {
		// A redaction changes another event, so it is committed on its own.
		r, err := s.lockRoom(ctx, roomID)
		if err != nil {
			return "", err
		}
		defer r.unlock()
		if !usesContentRedacts(r.version) {
			// Before room version 11, redacts is a top-level key: take it out of the content
			// a client sent through PUT /send, as the spec (v1.18) asks.
			var c map[string]json.RawMessage
			if err := json.Unmarshal(req.Content, &c); err == nil {
				var id string
				if json.Unmarshal(c["redacts"], &id) == nil && id != "" {
					delete(c, "redacts")
					req.Redacts = id
					req.Content, _ = json.Marshal(c)
				}
			}
		}
		ev, err := s.submit(ctx, r, req)
		if err != nil {
			return "", err
		}
		return ev.EventID, nil
	}
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return "", err
	}
	r.unlock()
	job := &sendJob{req: req, queued: time.Now(), done: make(chan struct{})}
	r.waiting.Add(1)
	r.qmu.Lock()
	r.queue = append(r.queue, job)
	lead := !r.leading
	r.leading = true
	r.qmu.Unlock()
	if lead {
		s.commitQueue(r, job)
	}
	select {
	case <-job.done:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if job.res.err != nil {
		return "", job.res.err
	}
	return job.res.ev.EventID, nil
}

// commitQueue commits the room's queued messages in batches until the batch holding own is
// done; then it hands the rest of the queue to a new goroutine, so that no sender waits for
// other senders' messages longer than one batch. The commit does not depend on any one
// client's request context: an acknowledged batch is committed whole.
func (s *Server) commitQueue(r *room, own *sendJob) {
	ctx := context.Background()
	for {
		r.qmu.Lock()
		jobs := r.queue
		if len(jobs) > maxBatch {
			jobs = jobs[:maxBatch]
		}
		r.queue = r.queue[len(jobs):]
		if len(jobs) == 0 {
			r.leading = false
			r.qmu.Unlock()
			return
		}
		r.qmu.Unlock()
		reqs := make([]eventRequest, len(jobs))
		for i, j := range jobs {
			reqs[i] = j.req
		}
		r.mu.Lock()
		r.waiting.Add(-int64(len(jobs)))
		var results []result
		if err := s.acquire(ctx, r); err != nil {
			r.mu.Unlock()
			results = failed(len(reqs), err)
		} else {
			for _, j := range jobs {
				s.inputWaited(j.queued)
			}
			if s.cfg.Cluster && !r.loaded {
				// Another process wrote to the room: read it again.
				if err := s.loadRoom(ctx, r); err != nil {
					results = failed(len(reqs), err)
				}
			}
			if results == nil {
				results = s.submitBatch(ctx, r, reqs)
			}
			r.unlock()
		}
		ownDone := false
		for i, j := range jobs {
			j.res = results[i]
			close(j.done)
			ownDone = ownDone || j == own
		}
		if ownDone {
			r.qmu.Lock()
			more := len(r.queue) > 0
			if !more {
				r.leading = false
			}
			r.qmu.Unlock()
			if more {
				go s.commitQueue(r, nil)
			}
			return
		}
	}
}

// SetState sends a state event.
func (s *Server) SetState(ctx context.Context, from Sender, roomID, evType, stateKey string, content json.RawMessage) (string, error) {
	return s.setState(ctx, from, roomID, evType, stateKey, content, "")
}

// setState is SetState with a transaction ID (delayed.go), which a repeated send of the same
// state event gives to get the first event back.
func (s *Server) setState(ctx context.Context, from Sender, roomID, evType, stateKey string, content json.RawMessage, txnID string) (string, error) {
	if evType == spec.MRoomMember {
		// Membership changes go through the same path as the dedicated endpoints, so that the
		// checks they make apply here too; the auth rules decide what is allowed.
		var c struct {
			Membership string `json:"membership"`
		}
		if err := json.Unmarshal(content, &c); err != nil || c.Membership == "" {
			return "", spec.BadJSON("m.room.member content needs a membership")
		}
	}
	if evType == "m.room.canonical_alias" {
		if err := s.checkCanonicalAlias(ctx, roomID, content); err != nil {
			return "", err
		}
	}
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return "", err
	}
	defer r.unlock()
	if err := s.checkStateContent(r, evType, content); err != nil {
		return "", err
	}
	if evType == spec.MRoomMember && stateKey == from.UserID && membershipOf(content) == spec.Leave {
		if err := s.checkNoticeInviteKept(ctx, r, roomID, from.UserID); err != nil {
			return "", err
		}
	}
	ev, err := s.submit(ctx, r, eventRequest{Sender: from.UserID, Type: evType, StateKey: &stateKey, Content: content, TS: from.TS,
		TxnDevice: txnDevice(from, txnID), TxnID: txnID})
	if err != nil {
		return "", err
	}
	return ev.EventID, nil
}

// membershipOf returns the membership of m.room.member content ("" if none).
func membershipOf(content json.RawMessage) string {
	var c struct {
		Membership string `json:"membership"`
	}
	_ = json.Unmarshal(content, &c)
	return c.Membership
}

// checkStateContent refuses with M_BAD_JSON state that no sender could ever be allowed to
// send, before the auth rules would call it forbidden: a second m.room.create (a room has
// exactly one, its first event), and, in rooms with privileged creators (v12), power levels
// that name a creator ("Room creators ... cannot be specified in the m.room.power_levels
// event", rooms/v12.md).
func (s *Server) checkStateContent(r *room, evType string, content json.RawMessage) error {
	switch {
	case evType == spec.MRoomCreate:
		return spec.BadJSON("a room has one m.room.create event, sent when it is created")
	case evType == spec.MRoomPowerLevels && r.version.PrivilegedCreators():
		var c struct {
			Users map[string]json.RawMessage `json:"users"`
		}
		if json.Unmarshal(content, &c) != nil {
			return nil // the auth rules judge malformed power levels
		}
		for _, creator := range s.creators(r) {
			if _, ok := c.Users[creator]; ok {
				return spec.BadJSON("room creators have infinite power and cannot be listed in users: " + creator)
			}
		}
	}
	return nil
}

// checkCanonicalAlias validates an m.room.canonical_alias event as the spec's PUT /state
// says: every alias must be well formed (M_INVALID_PARAM) and, when it is one of this
// server's, point to the room (M_BAD_ALIAS). Remote aliases cannot be checked without
// federation and are accepted.
func (s *Server) checkCanonicalAlias(ctx context.Context, roomID string, content json.RawMessage) error {
	var c struct {
		Alias      *string  `json:"alias"`
		AltAliases []string `json:"alt_aliases"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		return spec.BadJSON("alias and alt_aliases must be strings")
	}
	aliases := c.AltAliases
	if c.Alias != nil {
		aliases = append(aliases, *c.Alias)
	}
	for _, a := range aliases {
		i := strings.IndexByte(a, ':')
		if !strings.HasPrefix(a, "#") || i < 2 || i == len(a)-1 {
			return spec.InvalidParam(fmt.Sprintf("%q is not a room alias", a))
		}
		if spec.ServerName(a[i+1:]) != s.cfg.ServerName {
			continue
		}
		target, _, err := s.db.Alias(ctx, a)
		if err != nil || target != roomID {
			return spec.MatrixError{ErrCode: spec.ErrorBadAlias, Err: fmt.Sprintf("the alias %s does not point to this room", a)}
		}
	}
	return nil
}

// Redact sends a redaction of eventID. The sender must have sent the event or hold the
// room's redact power level.
func (s *Server) Redact(ctx context.Context, from Sender, roomID, eventID, reason, txnID string) (string, error) {
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return "", err
	}
	defer r.unlock()
	// The target need not be known: "the server may not have the event being redacted"
	// (an event of another server still on its way). redactionTarget decides who may.
	content := map[string]any{}
	if reason != "" {
		content["reason"] = reason
	}
	req := eventRequest{Sender: from.UserID, Type: spec.MRoomRedaction, TxnDevice: from.DeviceID, TxnID: txnID}
	if usesContentRedacts(r.version) {
		content["redacts"] = eventID
	} else {
		req.Redacts = eventID
	}
	req.Content, _ = json.Marshal(content)
	ev, err := s.submit(ctx, r, req)
	if err != nil {
		return "", err
	}
	return ev.EventID, nil
}

// usesContentRedacts reports whether the room version moved redacts into content (v11+).
func usesContentRedacts(ver gomatrixserverlib.IRoomVersion) bool {
	switch ownedstate.Base(ver.Version()) {
	case gomatrixserverlib.RoomVersionV1, gomatrixserverlib.RoomVersionV2, gomatrixserverlib.RoomVersionV3,
		gomatrixserverlib.RoomVersionV4, gomatrixserverlib.RoomVersionV5, gomatrixserverlib.RoomVersionV6,
		gomatrixserverlib.RoomVersionV7, gomatrixserverlib.RoomVersionV8, gomatrixserverlib.RoomVersionV9,
		gomatrixserverlib.RoomVersionV10:
		return false
	}
	return true
}

// CurrentState returns the room's current state events.
func (s *Server) CurrentState(ctx context.Context, roomID string) ([]*storage.Event, error) {
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	nid := r.nid
	r.unlock()
	return s.db.CurrentStateEvents(ctx, nid, "")
}

// StateEventAt returns the event for key in the state of a snapshot, or ErrNotFound.
func (s *Server) StateEventAt(ctx context.Context, snapshotNID int64, key storage.StateKey) (*storage.Event, error) {
	state, err := s.StateAt(ctx, snapshotNID)
	if err != nil {
		return nil, err
	}
	knid, err := s.lookupStateKeyNID(ctx, key)
	if err != nil {
		return nil, err
	}
	evNID, ok := state[knid]
	if !ok || knid == 0 {
		return nil, storage.ErrNotFound
	}
	evs, err := s.db.EventsByNID(ctx, []int64{evNID})
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return nil, storage.ErrNotFound
	}
	return evs[0], nil
}

const idAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

func randomString(n int) string {
	b := make([]byte, n)
	max := big.NewInt(int64(len(idAlphabet)))
	for i := range b {
		v, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic(err)
		}
		b[i] = idAlphabet[v.Int64()]
	}
	return string(b)
}

// failed returns n results failing with err.
func failed(n int, err error) []result {
	out := make([]result, n)
	for i := range out {
		out[i].err = err
	}
	return out
}
