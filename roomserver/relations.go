package roomserver

import (
	"context"
	"encoding/json"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// relatesTo is the m.relates_to of an event's content.
type relatesTo struct {
	RelType string `json:"rel_type"`
	EventID string `json:"event_id"`
	Key     string `json:"key"`
}

// relationOf returns the relation an event declares, if any.
func relationOf(pdu gomatrixserverlib.PDU) *relatesTo {
	var c struct {
		RelatesTo *relatesTo `json:"m.relates_to"`
	}
	if json.Unmarshal(pdu.Content(), &c) != nil || c.RelatesTo == nil || c.RelatesTo.RelType == "" || c.RelatesTo.EventID == "" {
		return nil
	}
	return c.RelatesTo
}

// checkRelation applies the server rules for relations: a user may not send a second
// annotation with the same type and key on one event of the room (M_DUPLICATE_ANNOTATION).
func (s *Server) checkRelation(ctx context.Context, roomNID int64, pdu gomatrixserverlib.PDU) error {
	rel := relationOf(pdu)
	if rel == nil || rel.RelType != "m.annotation" {
		return nil
	}
	dup, err := s.db.HasAnnotation(ctx, roomNID, rel.EventID, string(pdu.SenderID()), pdu.Type(), rel.Key)
	if err != nil {
		return err
	}
	if dup {
		return spec.MatrixError{ErrCode: "M_DUPLICATE_ANNOTATION", Err: "you already sent this annotation"}
	}
	return nil
}

// storeRelation records the relation of a committed event; InsertRelation ignores a relation
// at an event of another room.
func storeRelation(ctx context.Context, tx *storage.Tx, ev *storage.Event, pdu gomatrixserverlib.PDU) error {
	rel := relationOf(pdu)
	if rel == nil {
		return nil
	}
	return tx.InsertRelation(ctx, storage.Relation{
		EventNID: ev.NID, RoomNID: ev.RoomNID, RelatesTo: rel.EventID, RelType: rel.RelType,
		EventType: ev.Type, Sender: ev.Sender, OriginTS: ev.OriginTS, EventID: ev.EventID, AggregationKey: rel.Key,
	})
}
