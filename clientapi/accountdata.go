package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// ownUser checks that the {userId} of the path is the requester.
func ownUser(r *http.Request) (string, error) {
	dev := httputil.Device(r.Context())
	if httputil.PathVar(r, "userId") != dev.UserID {
		return "", spec.Forbidden("you can only access your own data")
	}
	return dev.UserID, nil
}

// handleGetAccountData handles GET /user/{userId}[/rooms/{roomId}]/account_data/{type}.
func (s *Server) handleGetAccountData(r *http.Request) (any, error) {
	userID, err := ownUser(r)
	if err != nil {
		return nil, err
	}
	content, err := s.db.AccountDataEntry(r.Context(), userID, httputil.PathVar(r, "roomId"), httputil.PathVar(r, "type"))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("account data not found")
	} else if err != nil {
		return nil, err
	}
	return json.RawMessage(content), nil
}

// handleSetAccountData handles PUT /user/{userId}[/rooms/{roomId}]/account_data/{type}.
func (s *Server) handleSetAccountData(r *http.Request) (any, error) {
	userID, err := ownUser(r)
	if err != nil {
		return nil, err
	}
	content, err := decodeContent(r)
	if err != nil {
		return nil, err
	}
	dataType := httputil.PathVar(r, "type")
	if err := settableType(dataType); err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(content, &fields) == nil && len(fields) == 0 {
		// MSC3391: PUT {} is the same as DELETE; the stored form of a deletion is exactly {}.
		content = json.RawMessage(storage.DeletedAccountData)
	}
	return struct{}{}, s.setAccountData(r, userID, httputil.PathVar(r, "roomId"), dataType, string(content))
}

// settableType refuses the types that the account data API must not write: the server keeps
// them through their own endpoints.
func settableType(dataType string) error {
	if dataType == "m.fully_read" || dataType == "m.push_rules" {
		return &httputil.Error{Status: http.StatusMethodNotAllowed, Code: "M_BAD_JSON", Msg: "this type cannot be set with this API"}
	}
	return nil
}

// handleDeleteAccountData handles MSC3391's
// DELETE /unstable/org.matrix.msc3391/user/{userId}[/rooms/{roomId}]/account_data/{type}.
// The entry is replaced by {} with a new stream position, so an incremental /sync shows the
// deletion as {} content and GET answers 404 afterwards. Deleting an absent entry succeeds.
func (s *Server) handleDeleteAccountData(r *http.Request) (any, error) {
	userID, err := ownUser(r)
	if err != nil {
		return nil, err
	}
	roomID, dataType := httputil.PathVar(r, "roomId"), httputil.PathVar(r, "type")
	if err := settableType(dataType); err != nil {
		return nil, err
	}
	if _, err := s.db.AccountDataEntry(r.Context(), userID, roomID, dataType); errors.Is(err, storage.ErrNotFound) {
		return struct{}{}, nil
	} else if err != nil {
		return nil, err
	}
	return struct{}{}, s.setAccountData(r, userID, roomID, dataType, storage.DeletedAccountData)
}

func (s *Server) setAccountData(r *http.Request, userID, roomID, dataType, content string) error {
	var pos int64
	err := s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		var err error
		pos, err = tx.SetAccountData(r.Context(), userID, roomID, dataType, content)
		return err
	})
	if err == nil && s.waker != nil {
		s.waker.Wake(storage.StreamAccountData, pos, []string{userID})
	}
	return err
}

func (s *Server) tags(r *http.Request, userID, roomID string) (map[string]map[string]any, error) {
	content, err := s.db.AccountDataEntry(r.Context(), userID, roomID, "m.tag")
	tags := struct {
		Tags map[string]map[string]any `json:"tags"`
	}{}
	if errors.Is(err, storage.ErrNotFound) {
		return map[string]map[string]any{}, nil
	} else if err != nil {
		return nil, err
	}
	_ = json.Unmarshal([]byte(content), &tags)
	if tags.Tags == nil {
		tags.Tags = map[string]map[string]any{}
	}
	return tags.Tags, nil
}

// handleTags handles GET /user/{userId}/rooms/{roomId}/tags.
func (s *Server) handleTags(r *http.Request) (any, error) {
	userID, err := ownUser(r)
	if err != nil {
		return nil, err
	}
	tags, err := s.tags(r, userID, httputil.PathVar(r, "roomId"))
	if err != nil {
		return nil, err
	}
	return map[string]any{"tags": tags}, nil
}

// handleSetTag handles PUT /user/{userId}/rooms/{roomId}/tags/{tag}.
func (s *Server) handleSetTag(r *http.Request) (any, error) {
	return s.changeTag(r, true)
}

// handleDeleteTag handles DELETE /user/{userId}/rooms/{roomId}/tags/{tag}.
func (s *Server) handleDeleteTag(r *http.Request) (any, error) {
	return s.changeTag(r, false)
}

func (s *Server) changeTag(r *http.Request, set bool) (any, error) {
	userID, err := ownUser(r)
	if err != nil {
		return nil, err
	}
	roomID, tag := httputil.PathVar(r, "roomId"), httputil.PathVar(r, "tag")
	var body map[string]any
	if set {
		if err := httputil.DecodeJSON(r, &body); err != nil {
			return nil, err
		}
		if o, ok := body["order"]; ok {
			if _, isNum := o.(float64); !isNum {
				return nil, spec.BadJSON("order must be a number")
			}
		}
	}
	tags, err := s.tags(r, userID, roomID)
	if err != nil {
		return nil, err
	}
	if set {
		tags[tag] = body
	} else {
		delete(tags, tag)
	}
	content, _ := json.Marshal(map[string]any{"tags": tags})
	return struct{}{}, s.setAccountData(r, userID, roomID, "m.tag", string(content))
}
