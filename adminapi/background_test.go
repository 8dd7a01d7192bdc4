package adminapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// TestBackgroundUpdatesStatus: the status lists the unfinished purges and room deletions,
// not the finished ones, and the enabled switch answers what it was set to.
func TestBackgroundUpdatesStatus(t *testing.T) {
	ctx := context.Background()
	db, err := storage.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "lattice.db"), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const token = "admin-token"
	now := time.Now().UnixMilli()
	err = db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.InsertAccount(ctx, storage.Account{UserID: "@root:example.org", PasswordHash: "x", IsAdmin: true, CreatedTS: 1}); err != nil {
			return err
		}
		if err := tx.UpsertDevice(ctx, storage.Device{UserID: "@root:example.org", DeviceID: "DEV", CreatedTS: 1}, httputil.HashToken(token)); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.InsertPurge(ctx, storage.Purge{ID: "p1", RoomID: "!b:example.org", RoomNID: 7, BeforeDepth: 5, CreatedTS: now - 1000}); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.ServerName = "example.org"
	s := New(&cfg, db, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	router := mux.NewRouter().SkipClean(true).UseEncodedPath()
	s.Register(router) // fails the room deletions a previous process left: add them after
	err = db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.InsertRoomDelete(ctx, storage.RoomDelete{DeleteID: "del1", RoomID: "!a:example.org", Status: "active"}, now-2000); err != nil {
			return err
		}
		return tx.InsertRoomDelete(ctx, storage.RoomDelete{DeleteID: "del0", RoomID: "!old:example.org", Status: "complete"}, now-9000)
	})
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path, body string) (int, map[string]any) {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		router.ServeHTTP(w, req)
		var out map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &out)
		return w.Code, out
	}

	code, out := do("GET", "/_synapse/admin/v1/background_updates/status", "")
	if code != 200 || out["enabled"] != true {
		t.Fatalf("status: %d %v", code, out)
	}
	cur, _ := out["current_updates"].(map[string]any)
	if len(cur) != 2 {
		t.Fatalf("current_updates: %v, want the active purge and room deletion", cur)
	}
	for key, name := range map[string]string{"purge_history/p1": "purge_history !b:example.org", "delete_room/del1": "delete_room !a:example.org"} {
		u, _ := cur[key].(map[string]any)
		if u["name"] != name || u["total_item_count"] != float64(0) || u["average_items_per_ms"] != float64(0) {
			t.Errorf("%s: %v", key, u)
		}
		if d, _ := u["total_duration_ms"].(float64); d < 1000 {
			t.Errorf("%s: total_duration_ms %v", key, u["total_duration_ms"])
		}
	}
	if err := db.FinishPurge(ctx, "p1", "", now); err != nil {
		t.Fatal(err)
	}
	if _, out = do("GET", "/_synapse/admin/v1/background_updates/status", ""); len(out["current_updates"].(map[string]any)) != 1 {
		t.Errorf("after the purge finished: %v", out)
	}

	for _, c := range []struct {
		body string
		want bool
	}{{`{"enabled": false}`, false}, {`{}`, true}, {`{"enabled": false}`, false}, {`{"enabled": true}`, true}} {
		code, out = do("POST", "/_synapse/admin/v1/background_updates/enabled", c.body)
		if code != 200 || out["enabled"] != c.want || len(out) != 1 {
			t.Errorf("POST enabled %s: %d %v", c.body, code, out)
		}
		if _, st := do("GET", "/_synapse/admin/v1/background_updates/status", ""); st["enabled"] != c.want || s.BackgroundUpdatesEnabled() != c.want {
			t.Errorf("status after %s: %v", c.body, st)
		}
	}
	for _, bad := range []string{`{"enabled": "no"}`, `{"enabled": null}`, `[]`, `nope`} {
		if code, out = do("POST", "/_synapse/admin/v1/background_updates/enabled", bad); code != 400 {
			t.Errorf("POST enabled %s: %d %v, want 400", bad, code, out)
		}
	}
}
