package adminapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/gorilla/mux"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// TestEveryRouteIsAdminOnly walks every registered admin route: without a token it is 401
// M_MISSING_TOKEN, with the token of an account that is not an admin it is 403 M_FORBIDDEN,
// and only the routes marked open (server_version) answer anyone.
func TestEveryRouteIsAdminOnly(t *testing.T) {
	ctx := context.Background()
	db, err := storage.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "lattice.db"), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const token = "not-an-admin-token"
	err = db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.InsertAccount(ctx, storage.Account{UserID: "@alice:example.org", PasswordHash: "x", CreatedTS: 1}); err != nil {
			return err
		}
		return tx.UpsertDevice(ctx, storage.Device{UserID: "@alice:example.org", DeviceID: "DEV", CreatedTS: 1}, httputil.HashToken(token))
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.ServerName = "example.org"
	s := New(&cfg, db, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	router := mux.NewRouter().SkipClean(true).UseEncodedPath()
	s.Register(router)

	open := map[string]bool{"/_synapse/admin/v1/server_version": true}
	vars := regexp.MustCompile(`\{[^}]+\}`)
	n := 0
	err = router.Walk(func(rt *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tmpl, err := rt.GetPathTemplate()
		if err != nil {
			return nil // a prefix subrouter
		}
		methods, err := rt.GetMethods()
		if err != nil {
			return nil
		}
		path := vars.ReplaceAllStringFunc(tmpl, func(v string) string {
			switch {
			case regexp.MustCompile(`^\{version`).MatchString(v):
				return "v3"
			case regexp.MustCompile(`(?i)user`).MatchString(v):
				return "@bob:example.org"
			case regexp.MustCompile(`(?i)room`).MatchString(v):
				return "!room:example.org"
			case regexp.MustCompile(`(?i)event`).MatchString(v):
				return "$event"
			}
			return "x"
		})
		for _, m := range methods {
			n++
			for _, withToken := range []bool{false, true} {
				req := httptest.NewRequest(m, path, nil)
				if withToken {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				w := httptest.NewRecorder()
				router.ServeHTTP(w, req)
				var body struct {
					Errcode string `json:"errcode"`
				}
				_ = json.Unmarshal(w.Body.Bytes(), &body)
				switch {
				case open[tmpl]:
					if w.Code != http.StatusOK {
						t.Errorf("%s %s: %d %s, want 200 for anyone", m, tmpl, w.Code, w.Body)
					}
				case !withToken && (w.Code != http.StatusUnauthorized || body.Errcode != "M_MISSING_TOKEN"):
					t.Errorf("%s %s without a token: %d %s, want 401 M_MISSING_TOKEN", m, tmpl, w.Code, w.Body)
				case withToken && (w.Code != http.StatusForbidden || body.Errcode != "M_FORBIDDEN"):
					t.Errorf("%s %s as a non-admin: %d %s, want 403 M_FORBIDDEN", m, tmpl, w.Code, w.Body)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no admin routes registered")
	}
	t.Logf("%d admin routes checked", n)
}
