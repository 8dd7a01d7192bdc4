package e2e

import (
	"fmt"
	"testing"
)

// TestPaginationTokens: /sync's prev_batch and next_batch are positions that /messages accepts
// in both directions (message_pagination.yaml "from": "This token can be obtained from a
// prev_batch or next_batch token returned by the /sync endpoint"; dir=f returns events "in
// chronological order starting at from"). A token splits the timeline: what is before it goes
// backwards, what is after it goes forwards, nothing is lost or repeated.
func TestPaginationTokens(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	roomID := alice.CreateRoom(map[string]any{"preset": "private_chat"})
	var sent []string
	for i := 0; i < 30; i++ {
		sent = append(sent, alice.Send(roomID, fmt.Sprintf("m%d", i)))
	}

	r := alice.Sync("", `{"room":{"timeline":{"limit":5}}}`, 0)
	tl := obj(r.Body, "rooms", "join", roomID, "timeline")
	checkSameIDs(t, "initial sync timeline", ids(list(tl, "events")), sent[25:])
	prevBatch, nextBatch := str(tl, "prev_batch"), str(r.Body, "next_batch")
	if prevBatch == "" {
		t.Fatalf("no prev_batch: %s", jsonString(tl))
	}

	// prev_batch: backwards gives the events before the timeline, forwards the timeline itself.
	b := getMessages(alice, roomID, "b", prevBatch, 5)
	checkSameIDs(t, "dir=b from prev_batch", ids(b.chunk), reversed(sent[20:25]))
	f := getMessages(alice, roomID, "f", prevBatch, 5)
	checkSameIDs(t, "dir=f from prev_batch", ids(f.chunk), sent[25:30])

	// next_batch: nothing after it yet; backwards gives the newest events.
	f = getMessages(alice, roomID, "f", nextBatch, 5)
	checkSameIDs(t, "dir=f from next_batch with no new events", ids(f.chunk), nil)
	b = getMessages(alice, roomID, "b", nextBatch, 3)
	checkSameIDs(t, "dir=b from next_batch", ids(b.chunk), reversed(sent[27:30]))

	newID := alice.Send(roomID, "m30")
	f = getMessages(alice, roomID, "f", nextBatch, 5)
	checkSameIDs(t, "dir=f from next_batch after a new event", ids(f.chunk), []string{newID})

	// The incremental sync's prev_batch splits between m29 and m30.
	r = alice.Sync(nextBatch, `{"room":{"timeline":{"limit":5}}}`, 0)
	tl = obj(r.Body, "rooms", "join", roomID, "timeline")
	checkSameIDs(t, "incremental sync timeline", ids(list(tl, "events")), []string{newID})
	if pb := str(tl, "prev_batch"); pb != "" {
		b = getMessages(alice, roomID, "b", pb, 1)
		checkSameIDs(t, "dir=b from incremental prev_batch", ids(b.chunk), []string{sent[29]})
		f = getMessages(alice, roomID, "f", pb, 5)
		checkSameIDs(t, "dir=f from incremental prev_batch", ids(f.chunk), []string{newID})
	}

	// Walking backwards page by page then forwards from the oldest `end` covers everything once.
	all := reversed(paginateBack(alice, roomID, "", 4, nil))
	checkNoDuplicates(t, "dir=b walk", all)
	checkSameIDs(t, "dir=b walk messages", ids(onlyType(all, "m.room.message")), append(append([]string{}, sent...), newID))
	var fwd []event
	from := ""
	for i := 0; i < 100; i++ {
		p := getMessages(alice, roomID, "f", from, 4)
		fwd = append(fwd, p.chunk...)
		if p.end == "" || len(p.chunk) == 0 {
			break
		}
		from = p.end
	}
	checkNoDuplicates(t, "dir=f walk", fwd)
	checkSameIDs(t, "dir=f walk equals dir=b walk", ids(fwd), ids(all))
}
