package federationapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"sync"

	"github.com/gorilla/mux"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

	"github.com/lattice-chat/lattice/roomserver"
)

var errNotYet = spec.Unrecognized("not implemented yet")

// sendResult is the answer to a transaction: per PDU, {} or {"error": ...}.
type sendResult struct {
	PDUs map[string]pduResult `json:"pdus"`
}

type pduResult struct {
	Error string `json:"error,omitempty"`
}

// txnCache remembers the answers to the last transactions of each origin, so that a retried
// transaction gets the same answer without being processed again ("the receiving server
// must ... be idempotent"). The events themselves are deduplicated by event ID, so a
// transaction retried after a restart is processed again harmlessly.
type txnCache struct {
	mu      sync.Mutex
	answers map[string]*sendResult // origin + "\x00" + txnID
	order   []string
}

const txnCacheSize = 1024

func (c *txnCache) get(key string) *sendResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.answers[key]
}

func (c *txnCache) put(key string, res *sendResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.answers == nil {
		c.answers = map[string]*sendResult{}
	}
	if _, ok := c.answers[key]; ok {
		return
	}
	c.answers[key] = res
	c.order = append(c.order, key)
	if len(c.order) > txnCacheSize {
		delete(c.answers, c.order[0])
		c.order = c.order[1:]
	}
}

// handleSend handles PUT /_matrix/federation/v1/send/{txnId}: the PDUs and EDUs another
// server pushes to us. PDUs are checked (checkPDU) and handed to the roomserver one by one,
// parents before the children that cite them (orderTxnPDUs); each gets its own result. Transactions of one origin are processed one at a time.
func (s *Server) handleSend(r *http.Request) (any, error) {
	ctx := r.Context()
	fr := request(ctx)
	origin := fr.Origin()
	txnID := mux.Vars(r)["txnId"]
	var body struct {
		Origin string                  `json:"origin"`
		PDUs   []json.RawMessage       `json:"pdus"`
		EDUs   []gomatrixserverlib.EDU `json:"edus"`
	}
	if err := json.Unmarshal(fr.Content(), &body); err != nil {
		return nil, spec.BadJSON("transaction is not valid JSON: " + err.Error())
	}
	if body.PDUs == nil && fr.Content() != nil && !gjson.GetBytes(fr.Content(), "pdus").Exists() {
		return nil, spec.MissingParam("pdus is required")
	}
	if len(body.PDUs) > 50 || len(body.EDUs) > 100 {
		return nil, spec.BadJSON("a transaction holds at most 50 PDUs and 100 EDUs")
	}
	key := string(origin) + "\x00" + txnID
	if res := s.txns.get(key); res != nil {
		return res, nil
	}
	lock := s.originLock(origin)
	lock.Lock()
	defer lock.Unlock()
	if res := s.txns.get(key); res != nil {
		return res, nil
	}
	res := &sendResult{PDUs: map[string]pduResult{}}
	for _, raw := range s.orderTxnPDUs(ctx, body.PDUs) {
		eventID, err := s.receivePDU(r, origin, raw)
		var internal *internalError
		if errors.As(err, &internal) {
			// Not the PDU's fault: the whole transaction fails and is not remembered, so
			// that the origin sends it again (the PDUs done already are recognised).
			return nil, internal.err
		}
		if eventID == "" {
			continue // not an event we can name: nothing to answer for
		}
		if err != nil {
			res.PDUs[eventID] = pduResult{Error: err.Error()}
		} else {
			res.PDUs[eventID] = pduResult{}
		}
	}
	s.handleEDUs(ctx, origin, body.EDUs)
	s.txns.put(key, res)
	return res, nil
}

// receivePDU checks one PDU of a transaction and gives it to the roomserver. It returns the
// event's ID ("" when it cannot be computed) and why the event was not accepted.
func (s *Server) receivePDU(r *http.Request, origin spec.ServerName, raw json.RawMessage) (string, error) {
	ctx := r.Context()
	roomID := gjson.GetBytes(raw, "room_id").Str
	if roomID == "" {
		return "", nil
	}
	// Read without the room lock: the room's input may be busy fetching from this origin.
	ver, err := s.rs.StoredRoomVersion(ctx, roomID)
	if err != nil {
		return "", nil // a room we are not in: ignored, as the spec allows
	}
	pdu, err := parsePDU(ver, raw)
	if err != nil {
		return "", nil
	}
	eventID := pdu.EventID()
	// Server ACLs: "If the sending server is denied access to the room ..., the PDU MUST
	// be ignored". The server of the event's sender is checked as well: a denied server's
	// event relayed by another server is still that server taking part in the room.
	for _, server := range []spec.ServerName{origin, senderServer(pdu)} {
		if server != "" && !s.rs.ServerAllowed(ctx, roomID, server) {
			return eventID, errors.New("the room's server ACL denies " + string(server))
		}
	}
	if pdu, err = s.checkPDU(ctx, ver, raw); err != nil {
		s.log.Info("PDU rejected", "origin", origin, "event_id", eventID, "err", err)
		return eventID, err
	}
	if err := s.rs.InputRemote(ctx, origin, pdu); err != nil {
		var rej *roomserver.RejectedError
		if !errors.As(err, &rej) {
			s.log.Error("PDU not processed", "origin", origin, "event_id", eventID, "err", err)
			return eventID, &internalError{err: err}
		}
		return eventID, err
	}
	return eventID, nil
}

// senderServer returns the server of a PDU's sender ("" for a sender that is not a user ID,
// as with pseudo IDs).
func senderServer(pdu gomatrixserverlib.PDU) spec.ServerName {
	if u := pdu.SenderID().ToUserID(); u != nil {
		return u.Domain()
	}
	return ""
}

// internalError is a failure of this server's own while processing a PDU (its database, a
// fetch from another server), as opposed to a rejection of the PDU.
type internalError struct{ err error }

func (e *internalError) Error() string { return e.err.Error() }

// originLock returns the lock that serialises the transactions of one origin.
func (s *Server) originLock(origin spec.ServerName) *sync.Mutex {
	s.originMu.Lock()
	defer s.originMu.Unlock()
	if s.origins == nil {
		s.origins = map[spec.ServerName]*sync.Mutex{}
	}
	l, ok := s.origins[origin]
	if !ok {
		l = &sync.Mutex{}
		s.origins[origin] = l
	}
	return l
}
