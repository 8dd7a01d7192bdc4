package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/matrix-org/gomatrixserverlib"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestPortTablesCoverSchema fails when a migration adds a table or a sequence-filled column
// that portTables does not know, so that no table is silently left out of a port.
func TestPortTablesCoverSchema(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t)
	listed := make(map[string]portTable)
	for _, pt := range portTables {
		listed[pt.name] = pt
	}
	names, err := db.strings(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\'`)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if _, ok := listed[name]; !ok && !slices.Contains(portSkipped, name) {
			t.Errorf("table %s is in the SQLite schema but not in portTables (storage/port.go)", name)
		}
	}
	for name := range listed {
		if !slices.Contains(names, name) {
			t.Errorf("portTables lists %s, which is not in the SQLite schema", name)
		}
	}
	// A BIGSERIAL in PostgreSQL is an AUTOINCREMENT in SQLite: its sequence must be reset.
	auto, err := db.strings(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE '%AUTOINCREMENT%'`)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range auto {
		if listed[name].serial == "" {
			t.Errorf("table %s has an AUTOINCREMENT column but no serial in portTables", name)
		}
	}
	for _, pt := range portTables {
		if pt.serial != "" && !slices.Contains(auto, pt.name) {
			t.Errorf("portTables gives %s a serial column, but it has no AUTOINCREMENT", pt.name)
		}
	}
}

// TestPortSerialsMatchPostgres checks the serial columns against PostgreSQL's own catalog.
func TestPortSerialsMatchPostgres(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, storagetest.NewPostgresDatabase(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := db.strings(ctx, `
		SELECT table_name || '.' || column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND column_default LIKE 'nextval(%'
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, pt := range portTables {
		if pt.serial != "" {
			want = append(want, pt.name+"."+pt.serial)
		}
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("serial columns in portTables (-) and in PostgreSQL (+):\n%s", diff)
	}
}

func TestPort(t *testing.T) {
	ctx := context.Background()
	from := openSQLite(t)
	to, err := Open(ctx, storagetest.NewPostgresDatabase(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer to.Close()
	const nEvents = 2500 // more than two batches
	fx := populate(t, from, nEvents)

	var calls []string
	progress := func(table string, done, total int64) {
		if table == "events" {
			calls = append(calls, fmt.Sprintf("%d/%d", done, total))
		}
	}
	if err := Port(ctx, from, to, progress); err != nil {
		t.Fatalf("Port: %v", err)
	}
	total := nEvents - 1 // one was deleted
	wantCalls := []string{fmt.Sprintf("0/%d", total), fmt.Sprintf("1000/%d", total), fmt.Sprintf("2000/%d", total), fmt.Sprintf("%d/%d", total, total)}
	if diff := cmp.Diff(wantCalls, calls); diff != "" {
		t.Errorf("progress for events (-want +got):\n%s", diff)
	}

	// Every row of every table, keys included, is the same on both sides.
	for _, pt := range portTables {
		src, dst := dumpTable(t, from, pt), dumpTable(t, to, pt)
		if len(src) == 0 {
			t.Errorf("table %s: the fixture left it empty, so the test proves nothing for it", pt.name)
		}
		if diff := cmp.Diff(src, dst); diff != "" {
			t.Errorf("table %s differs after the port (-sqlite +postgres):\n%s", pt.name, diff)
		}
	}

	// Through the storage API: the same event, the same stream positions.
	for _, id := range []string{fx.eventIDs[0], fx.eventIDs[len(fx.eventIDs)-1], fx.rejectedID} {
		want, err := from.Event(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		got, err := to.Event(ctx, id)
		if err != nil {
			t.Fatalf("event %s after the port: %v", id, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("event %s (-sqlite +postgres):\n%s", id, diff)
		}
	}
	for _, q := range []func(*DB) (int64, error){
		func(db *DB) (int64, error) { return db.MaxEventNID(ctx) },
		func(db *DB) (int64, error) { return db.StreamPos(ctx, "account_data") },
	} {
		want, err1 := q(from)
		got, err2 := q(to)
		if err1 != nil || err2 != nil || got != want {
			t.Errorf("stream position after the port: %d (%v), want %d (%v)", got, err2, want, err1)
		}
	}
	acct, err := to.Account(ctx, "@carol:test")
	if err != nil || !acct.Deactivated || acct.IsAdmin {
		t.Errorf("deactivated account after the port: %+v, %v", acct, err)
	}

	checkSequencesContinue(t, to, fx)

	// Porting into a database that now holds rows is refused.
	err = Port(ctx, from, to, nil)
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Port into a non-empty database: %v, want a 'not empty' error", err)
	}
}

// TestPortRefusesNonEmptyTarget: one row anywhere makes the target non-empty; the seeded
// stream rows at position 0 do not.
func TestPortRefusesNonEmptyTarget(t *testing.T) {
	ctx := context.Background()
	from := openSQLite(t)
	populate(t, from, 10)
	to, err := Open(ctx, storagetest.NewPostgresDatabase(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer to.Close()
	err = to.WithTx(ctx, func(tx *Tx) error { return tx.InsertAlias(ctx, "#x:test", "!x:test", "@x:test") })
	if err != nil {
		t.Fatal(err)
	}
	err = Port(ctx, from, to, nil)
	if err == nil || !strings.Contains(err.Error(), "room_aliases") {
		t.Fatalf("Port into a database with an alias: %v, want an error naming room_aliases", err)
	}
	var n int64
	if err := to.queryRow(ctx, `SELECT COUNT(*) FROM accounts`).Scan(&n); err != nil || n != 0 {
		t.Errorf("a refused port wrote %d accounts (%v)", n, err)
	}
}

func openSQLite(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "lattice.db"), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// fixture is what populate wrote.
type fixture struct {
	roomNID    int64
	eventIDs   []string
	rejectedID string
	maxIDs     map[string]int64 // serial column -> largest value
}

// populate writes rows into every table of db through the storage API, with nEvents (at
// least 6) room events of which one is then deleted, leaving a gap in the event NIDs.
func populate(t *testing.T, db *DB, nEvents int) fixture {
	t.Helper()
	ctx := context.Background()
	fx := fixture{maxIDs: make(map[string]int64)}
	err := db.WithTx(ctx, func(tx *Tx) error {
		for i, name := range []string{"alice", "bob", "carol"} {
			user := "@" + name + ":test"
			if err := tx.InsertAccount(ctx, Account{UserID: user, PasswordHash: "hash-" + name, IsAdmin: i == 0, CreatedTS: 1000 + int64(i)}); err != nil {
				return err
			}
			d := Device{UserID: user, DeviceID: "DEV" + name, DisplayName: "phone", CreatedTS: 2000, LastSeenIP: "10.0.0.1"}
			if err := tx.UpsertDevice(ctx, d, "token-"+name); err != nil {
				return err
			}
			if _, err := tx.SetAccountData(ctx, user, "", "m.push_rules", `{"n":`+fmt.Sprint(i)+`}`); err != nil {
				return err
			}
			id, err := tx.InsertFilter(ctx, user, `{"room":{"timeline":{"limit":`+fmt.Sprint(i+1)+`}}}`)
			if err != nil {
				return err
			}
			fx.maxIDs["filters"] = id
		}
		if err := tx.DeactivateAccount(ctx, "@carol:test"); err != nil {
			return err
		}
		if err := populateUserAdmin(ctx, tx); err != nil {
			return err
		}
		if err := populateE2EE(ctx, tx); err != nil {
			return err
		}
		if err := populateMedia(ctx, tx); err != nil {
			return err
		}
		if err := populateRemoteMedia(ctx, tx); err != nil {
			return err
		}
		if err := populateSlidingAndThreads(ctx, tx); err != nil {
			return err
		}
		if err := populateOAuth(ctx, tx); err != nil {
			return err
		}
		return populateRoom(ctx, tx, &fx, nEvents)
	})
	if err != nil {
		t.Fatalf("populate: %v", err)
	}
	if err := populateServerKeys(ctx, db); err != nil {
		t.Fatalf("populate server keys: %v", err)
	}
	if err := populateFederationQueue(ctx, db, &fx); err != nil {
		t.Fatalf("populate federation queue: %v", err)
	}
	if err := db.InsertPurge(ctx, Purge{ID: "purge1", RoomID: "!room:test", RoomNID: fx.roomNID, BeforeDepth: 2, UpToNID: 3, CreatedTS: 5000}); err != nil {
		t.Fatalf("populate purge history: %v", err)
	}
	if err := db.WithTx(ctx, func(tx *Tx) error { return populateAppServices(ctx, tx, fx.roomNID) }); err != nil {
		t.Fatalf("populate appservices: %v", err)
	}
	return fx
}

// populateRoom writes one room with its events, state and memberships.
func populateRoom(ctx context.Context, tx *Tx, fx *fixture, nEvents int) error {
	roomNID, err := tx.InsertRoom(ctx, "!room:test", "10", 3000)
	if err != nil {
		return err
	}
	fx.roomNID, fx.maxIDs["rooms"] = roomNID, roomNID
	if err := tx.InsertAlias(ctx, "#room:test", "!room:test", "@alice:test"); err != nil {
		return err
	}
	createKey, err := tx.StateKeyNID(ctx, StateKey{Type: "m.room.create"})
	if err != nil {
		return err
	}
	memberKey, err := tx.StateKeyNID(ctx, StateKey{Type: "m.room.member", StateKey: "@alice:test"})
	if err != nil {
		return err
	}
	fx.maxIDs["state_keys"] = max(createKey, memberKey)
	var nids []int64
	for i := range nEvents {
		ev := &Event{EventID: fmt.Sprintf("$ev%d", i), RoomNID: roomNID, Type: "m.room.message", Sender: "@alice:test",
			Depth: int64(i + 1), OriginTS: 5000 + int64(i), TxnDevice: "DEValice", TxnID: fmt.Sprintf("t%d", i),
			JSON: []byte(fmt.Sprintf(`{"type":"m.room.message","content":{"body":"héllo %d ✓"}}`, i))}
		switch i {
		case 0:
			ev.Type, ev.StateKeyNID, ev.TxnDevice, ev.TxnID = "m.room.create", createKey, "", ""
		case 1:
			ev.Type, ev.StateKeyNID, ev.ReplacesNID = "m.room.member", memberKey, 0
		case 2:
			ev.Status, ev.RedactedBy = StatusRejected, "$redactor"
			fx.rejectedID = ev.EventID
		case 3:
			ev.StickyUntil = 1 << 50 // a sticky event (sticky_events)
		}
		nid, err := tx.InsertEvent(ctx, ev)
		if err != nil {
			return err
		}
		nids = append(nids, nid)
		fx.eventIDs = append(fx.eventIDs, ev.EventID)
	}
	fx.maxIDs["events"] = nids[len(nids)-1]
	// A gap in the NIDs, as a deleted row leaves: IDs are copied, not renumbered.
	if _, err := tx.exec(ctx, `DELETE FROM events WHERE event_nid = $1`, nids[3]); err != nil {
		return err
	}
	fx.eventIDs = slices.Delete(fx.eventIDs, 3, 4)
	snap, err := tx.InsertSnapshot(ctx, roomNID, Snapshot{ChainLen: 1, Entries: map[int64]int64{createKey: nids[0], memberKey: nids[1]}})
	if err != nil {
		return err
	}
	fx.maxIDs["state_snapshots"] = snap
	if err := tx.SetCurrentState(ctx, roomNID, map[int64]int64{createKey: nids[0], memberKey: nids[1]}); err != nil {
		return err
	}
	if err := tx.SetRoomState(ctx, roomNID, snap, int64(nEvents)); err != nil {
		return err
	}
	if err := tx.SetForwardExtremities(ctx, roomNID, nids[len(nids)-1:]); err != nil {
		return err
	}
	if err := tx.SetMembership(ctx, roomNID, "@alice:test", "join", nids[1]); err != nil {
		return err
	}
	if err := tx.InsertPartialStateRoom(ctx, PartialStateRoom{RoomNID: roomNID, RoomID: "!room:test", JoinEventID: fx.eventIDs[1],
		JoinedVia: "remote.test", ServersInRoom: []string{"remote.test", "other.test"}, CreatedTS: 6400}); err != nil {
		return err
	}
	if err := tx.InsertRelation(ctx, Relation{EventNID: nids[3], RoomNID: roomNID, RelatesTo: fx.eventIDs[2], RelType: "m.annotation",
		EventType: "m.reaction", Sender: "@alice:test", OriginTS: 4000, EventID: fx.eventIDs[3], AggregationKey: "👍"}); err != nil {
		return err
	}
	if _, err := tx.SetReceipt(ctx, Receipt{RoomNID: roomNID, UserID: "@alice:test", Type: "m.read", ThreadID: "main",
		EventID: fx.eventIDs[4], EventNID: nids[4], TS: 6500}); err != nil {
		return err
	}
	if _, err := tx.SetPresence(ctx, Presence{UserID: "@alice:test", State: "online", StatusMsg: "porting", LastActiveTS: 6600}); err != nil {
		return err
	}
	score := int64(-50)
	id, err := tx.InsertReport(ctx, Report{Reporter: "@alice:test", RoomID: "!room:test", EventID: fx.eventIDs[1], Reason: "spam", Score: &score, TS: 7000})
	if err != nil {
		return err
	}
	fx.maxIDs["reports"] = id
	if err := tx.BlockRoom(ctx, "!blocked:test", "@admin:test", 7100); err != nil {
		return err
	}
	if err := tx.InsertRoomDelete(ctx, RoomDelete{DeleteID: "del1", RoomID: "!gone:test", Status: "complete", Result: `{"kicked_users":[]}`}, 7200); err != nil {
		return err
	}
	if err := tx.InsertPurgedLeaves(ctx, []PurgedLeave{{UserID: "@alice:test", RoomID: "!gone:test", StreamPos: 7,
		EventJSON: []byte(`{"type":"m.room.member","state_key":"@alice:test","content":{"membership":"leave"}}`)}}); err != nil {
		return err
	}
	if err := populatePush(ctx, tx, roomNID, nids); err != nil {
		return err
	}
	if err := populateOperators(ctx, tx); err != nil {
		return err
	}
	if err := populateRTC(ctx, tx); err != nil {
		return err
	}
	return tx.InsertTxn(ctx, "@alice:test", "DEValice", roomNID, "t5", fx.eventIDs[4], 6000)
}

// dumpTable returns every row of the table in key order, with booleans as 0 or 1 and text
// as strings, so that rows read from either backend compare equal.
func dumpTable(t *testing.T, db *DB, pt portTable) [][]any {
	t.Helper()
	rows, err := db.query(context.Background(), `SELECT * FROM `+pt.name+` ORDER BY `+pt.key)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]any
	for rows.Next() {
		row := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range row {
			ptrs[i] = &row[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, v := range row {
			switch x := v.(type) {
			case bool:
				row[i] = int64(0)
				if x {
					row[i] = int64(1)
				}
			case int32:
				row[i] = int64(x)
			case []byte:
				row[i] = string(x)
			}
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkSequencesContinue inserts a new row into every table with a sequence and checks that
// it gets an ID above the ported ones.
func checkSequencesContinue(t *testing.T, db *DB, fx fixture) {
	t.Helper()
	ctx := context.Background()
	got := make(map[string]int64)
	err := db.WithTx(ctx, func(tx *Tx) error {
		var err error
		if got["events"], err = tx.InsertEvent(ctx, &Event{EventID: "$new", RoomNID: fx.roomNID, Type: "m.room.message",
			Sender: "@bob:test", Depth: 1 << 20, JSON: []byte(`{}`)}); err != nil {
			return err
		}
		if got["filters"], err = tx.InsertFilter(ctx, "@bob:test", `{}`); err != nil {
			return err
		}
		if got["rooms"], err = tx.InsertRoom(ctx, "!new:test", "10", 1); err != nil {
			return err
		}
		if got["state_keys"], err = tx.StateKeyNID(ctx, StateKey{Type: "m.room.topic"}); err != nil {
			return err
		}
		if got["reports"], err = tx.InsertReport(ctx, Report{Reporter: "@bob:test", Reason: "after", TS: 1}); err != nil {
			return err
		}
		if got["state_snapshots"], err = tx.InsertSnapshot(ctx, fx.roomNID, Snapshot{ChainLen: 1}); err != nil {
			return err
		}
		if err := tx.QueuePDU(ctx, got["events"], []string{"new.test"}); err != nil {
			return err
		}
		if err := tx.QueueEDU(ctx, "new.test", "m.typing", []byte(`{}`)); err != nil {
			return err
		}
		for _, table := range []string{"federation_queue_pdus", "federation_queue_edus"} {
			var pos int64
			if err := tx.queryRow(ctx, `SELECT queue_pos FROM `+table+` WHERE destination = 'new.test'`).Scan(&pos); err != nil {
				return err
			}
			got[table] = pos
		}
		return nil
	})
	if err != nil {
		t.Fatalf("insert after the port: %v", err)
	}
	for _, pt := range portTables {
		if pt.serial == "" {
			continue
		}
		if got[pt.name] != fx.maxIDs[pt.name]+1 {
			t.Errorf("new row in %s after the port got %s %d, want %d", pt.name, pt.serial, got[pt.name], fx.maxIDs[pt.name]+1)
		}
	}
}

// populatePush writes notifications (own and shared, with push spans) and a pusher.
func populatePush(ctx context.Context, tx *Tx, roomNID int64, nids []int64) error {
	if err := tx.InsertPushActions(ctx, []PushAction{
		{UserID: "@bob:test", RoomNID: roomNID, EventNID: nids[4], ThreadID: ThreadMain, Actions: `["notify"]`, TS: 7100},
		{UserID: "@bob:test", RoomNID: roomNID, EventNID: nids[5], ThreadID: "$root", Highlight: true,
			Actions: `["notify",{"set_tweak":"highlight"}]`, TS: 7200},
	}); err != nil {
		return err
	}
	if err := tx.ChangePushSpans(ctx, []SpanChange{
		{UserID: "@carol:test", RoomNID: roomNID, EventNID: nids[3], Open: true},
		{UserID: "@dave:test", RoomNID: roomNID, EventNID: nids[3], Open: true},
		{UserID: "@dave:test", RoomNID: roomNID, EventNID: nids[5]},
	}); err != nil {
		return err
	}
	if err := tx.InsertSharedPushes(ctx, []SharedPush{{RoomNID: roomNID, EventNID: nids[4], Sender: "@alice:test",
		ThreadID: ThreadMain, Actions: `["notify"]`, TS: 7100, Apart: []string{"@dave:test"}}}); err != nil {
		return err
	}
	return tx.SetPusher(ctx, Pusher{UserID: "@bob:test", AppID: "org.example.app", PushKey: "key✓", Kind: "http",
		AppDisplayName: "App", DeviceDisplayName: "phone", Lang: "en", Data: `{"url":"https://push.example/_matrix/push/v1/notify"}`,
		PushKeyTS: 7300}, false)
}

// populateServerKeys caches a remote server's key response (a current key with its signed
// response) and an old key learnt without one.
func populateServerKeys(ctx context.Context, db *DB) error {
	cache := db.ServerKeyCache(func() time.Time { return time.UnixMilli(8000) })
	var keys gomatrixserverlib.ServerKeys
	raw := `{"server_name":"remote.test","valid_until_ts":9000,"verify_keys":{"ed25519:k1":{"key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}},"old_verify_keys":{}}`
	if err := json.Unmarshal([]byte(raw), &keys); err != nil {
		return err
	}
	if err := cache.StoreServerKeys(ctx, keys); err != nil {
		return err
	}
	return cache.StoreKeys(ctx, map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult{
		{ServerName: "remote.test", KeyID: "ed25519:old"}: {VerifyKey: gomatrixserverlib.VerifyKey{Key: []byte("0123456789abcdef0123456789abcdef")}, ExpiredTS: 7000},
	})
}

// populateFederationQueue queues events and EDUs for two destinations and starts a
// transaction to one of them, which then fails, so that every column holds a value.
func populateFederationQueue(ctx context.Context, db *DB, fx *fixture) error {
	last := fx.maxIDs["events"]
	err := db.WithTx(ctx, func(tx *Tx) error {
		if err := tx.QueuePDU(ctx, last-1, []string{"a.test", "b.test"}); err != nil {
			return err
		}
		if err := tx.QueuePDU(ctx, last, []string{"a.test", "b.test"}); err != nil {
			return err
		}
		for _, dest := range []string{"a.test", "b.test"} {
			if err := tx.QueueEDU(ctx, dest, "m.receipt", []byte(`{"!room:test":{"m.read":{}}}`)); err != nil {
				return err
			}
		}
		for _, table := range []string{"federation_queue_pdus", "federation_queue_edus"} {
			var pos int64
			if err := tx.queryRow(ctx, `SELECT MAX(queue_pos) FROM `+table).Scan(&pos); err != nil {
				return err
			}
			fx.maxIDs[table] = pos
		}
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := db.NextFederationTxn(ctx, "a.test", 1, 1, "1700000000000.1"); err != nil {
		return err
	}
	return db.SetFederationBackoff(ctx, "a.test", 3, 9000)
}

// populateUserAdmin fills what the admin API keeps of accounts: flags, a rate-limit override,
// third-party and external IDs and a puppet token.
func populateUserAdmin(ctx context.Context, tx *Tx) error {
	if err := tx.SetAccountFlag(ctx, "@bob:test", FlagSuspended, true); err != nil {
		return err
	}
	bot := "bot"
	if err := tx.SetUserType(ctx, "@bob:test", &bot); err != nil {
		return err
	}
	if err := tx.SetRateLimitOverride(ctx, "@bob:test", &RateLimitOverride{MessagesPerSecond: 3, BurstCount: 7}); err != nil {
		return err
	}
	if err := tx.SetThreePIDs(ctx, "@bob:test", []ThreePID{{Medium: "email", Address: "bob@test"}, {Medium: "msisdn", Address: "4412345"}}, 11); err != nil {
		return err
	}
	if err := tx.SetExternalIDs(ctx, "@bob:test", []ExternalID{{AuthProvider: "oidc-test", ExternalID: "b/1"}}); err != nil {
		return err
	}
	if err := tx.InsertLoginToken(ctx, "login-hash", "@bob:test", 1<<50, 1); err != nil {
		return err
	}
	if err := tx.InsertUIASSOCompletion(ctx, "uia-session", "@bob:test", 1<<50, 1); err != nil {
		return err
	}
	if err := tx.InsertUIASession(ctx, UIASession{SessionID: "uia-session", UserID: "@bob:test", Method: "POST",
		Path: "/_matrix/client/v3/delete_devices", Description: "sign out devices", ExpiresTS: 1 << 50}, 1); err != nil {
		return err
	}
	if err := tx.PutEmailSession(ctx, EmailSession{SID: "sid1", ClientSecret: "secret", Email: "carol@test",
		Purpose: "register", TokenHash: "h", SendAttempt: 1, CreatedTS: 5, ExpiresTS: 1 << 50, ValidatedTS: 6, UIASession: "uia"}); err != nil {
		return err
	}
	return tx.InsertPuppetToken(ctx, PuppetToken{UserID: "@bob:test", DeviceID: "PUPPET", AdminUserID: "@alice:test", ValidUntilMS: 99, CreatedTS: 5}, "puppet-hash")
}

// populateOAuth fills oauth_clients and oauth_grants.
func populateOAuth(ctx context.Context, tx *Tx) error {
	if err := tx.InsertOAuthClient(ctx, "client1", `{"client_uri":"https://c.example"}`, 5); err != nil {
		return err
	}
	if err := tx.InsertOAuthGrant(ctx, OAuthGrant{Hash: "g1", Kind: "code", ClientID: "client1", RedirectURI: "https://c.example/cb",
		CodeChallenge: "x", Scope: "s", Status: GrantPending, ExpiresTS: 1 << 50}, 1); err != nil {
		return err
	}
	return tx.InsertOAuthGrant(ctx, OAuthGrant{Hash: "g2", Kind: "device", ClientID: "client1", UserCode: "ABCD-EFGH", Scope: "s",
		Status: GrantPending, ExpiresTS: 1 << 50, IntervalMS: 5000}, 1)
}
