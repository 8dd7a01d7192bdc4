package roomserver

import (
	"encoding/json"
	"reflect"
	"testing"
)

// parsePDU picks fields with gjson; it must read what decoding the whole event would.
func TestParsePDUMatchesDecoding(t *testing.T) {
	for _, js := range []string{
		`{"type":"m.room.message","content":{"body":"hi \"there\" \u00e9","msgtype":"m.text"},"sender":"@a:x","origin_server_ts":1796674698110,"room_id":"!r:x","depth":3,"hashes":{"sha256":"x"}}`,
		`{"type":"m.room.member","state_key":"@a:x","content":{"membership":"join"},"sender":"@a:x","origin_server_ts":5,"unsigned":{"age":3,"invite_room_state":[{"type":"m.room.name"}]}}`,
		`{"type":"m.room.redaction","redacts":"$e","content":{},"sender":"@a:x","origin_server_ts":7}`,
		`{"type":"m.room.topic","state_key":"","content":{"topic":"t"},"sender":"@a:x","origin_server_ts":7}`,
		`{"type":"x","state_key":null,"sender":"@a:x","origin_server_ts":7}`,
		`{"sender":"@a:x", "type" : "x\\y", "content" : { "a" : [1, 2] } }`,
		`{"type":"m.rtc.member","content":{},"sender":"@a:x","origin_server_ts":7,"msc4354_sticky":{"duration_ms":4000},"sticky":{"duration_ms":5}}`,
	} {
		var want pduFields
		if err := json.Unmarshal([]byte(js), &want); err != nil {
			t.Fatal(err)
		}
		got, err := parsePDU([]byte(js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", js, got, want)
		}
	}
	if _, err := parsePDU([]byte(`not json`)); err == nil {
		t.Error("no error for invalid JSON")
	}
}
