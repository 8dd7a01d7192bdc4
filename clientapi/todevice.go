package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// toDeviceRoutes lists the send-to-device endpoint.
func (s *Server) toDeviceRoutes() []route {
	return []route{
		{http.MethodPut, "/sendToDevice/{eventType}/{txnId}", true, false, s.handleSendToDevice},
	}
}

// handleSendToDevice handles PUT /sendToDevice/{eventType}/{txnId} (to_device.yaml): each
// message is queued for its target device, or for every device of the user with "*", at one
// to_device stream position. The transaction ID is recorded in the same transaction, so a
// retried request is accepted and not delivered again. Messages to remote users are queued
// for their servers in the same transaction (EDUSink).
func (s *Server) handleSendToDevice(r *http.Request) (any, error) {
	dev := httputil.Device(r.Context())
	var req struct {
		Messages map[string]map[string]json.RawMessage `json:"messages"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Messages == nil {
		return nil, spec.MissingParam("messages is required")
	}
	evType, txnID := httputil.PathVar(r, "eventType"), httputil.PathVar(r, "txnId")
	var pos int64
	var users []string
	wakeRemote := func() {}
	err := s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		err := tx.InsertToDeviceTxn(r.Context(), dev.UserID, dev.DeviceID, txnID, time.Now().UnixMilli())
		if errors.Is(err, storage.ErrConflict) {
			return nil // already sent
		} else if err != nil {
			return err
		}
		if wakeRemote, err = s.eduSink().QueueToDevice(r.Context(), tx, dev.UserID, evType, req.Messages); err != nil {
			return err
		}
		var msgs []storage.ToDeviceMessage
		for userID, byDevice := range req.Messages {
			if _, local := s.userServer(userID); !local {
				continue
			}
			targets, err := s.toDeviceTargets(r, tx, userID, byDevice)
			if err != nil {
				return err
			}
			for deviceID, content := range targets {
				msgs = append(msgs, storage.ToDeviceMessage{UserID: userID, DeviceID: deviceID, Sender: dev.UserID, Type: evType, Content: string(content)})
			}
			if len(targets) > 0 {
				users = append(users, userID)
			}
		}
		if len(msgs) == 0 {
			return nil
		}
		pos, err = tx.InsertToDeviceMessages(r.Context(), msgs)
		return err
	})
	if err != nil {
		return nil, err
	}
	wakeRemote()
	if pos > 0 && s.waker != nil {
		s.waker.Wake(storage.StreamToDevice, pos, users)
	}
	return struct{}{}, nil
}

// toDeviceTargets maps the existing target devices of a local user to their message content:
// "*" names every device, and a device named explicitly gets its own message instead.
// Unknown devices are skipped.
func (s *Server) toDeviceTargets(r *http.Request, tx *storage.Tx, userID string, byDevice map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	devs, err := tx.Devices(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	out := map[string]json.RawMessage{}
	for _, d := range devs {
		content, ok := byDevice[d.DeviceID]
		if !ok {
			content, ok = byDevice["*"]
		}
		if !ok {
			continue
		}
		if !isObject(content) {
			return nil, spec.BadJSON("message content must be an object")
		}
		out[d.DeviceID] = content
	}
	return out, nil
}
