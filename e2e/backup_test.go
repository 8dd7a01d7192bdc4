package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestBackup: `lattice backup` copies the SQLite database while the server runs and writes
// to it; a second server started on a copy of the data directory with the backup as its
// database has the users, the room, the messages and the media.
// It never overwrites a file. On PostgreSQL it writes nothing and names pg_dump.
func TestBackup(t *testing.T) {
	srv := StartServer(t)
	out := filepath.Join(t.TempDir(), "backup.db")
	if os.Getenv("LATTICE_E2E_BACKEND") == "postgres" {
		b, err := exec.Command(binary, "backup", "--config", srv.ConfigPath, "--out", out).CombinedOutput()
		if err == nil || !strings.Contains(string(b), "pg_dump") || !strings.Contains(string(b), "signing.key") {
			t.Fatalf("backup on PostgreSQL: err %v, output:\n%s", err, b)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatal("backup on PostgreSQL wrote a file")
		}
		return
	}
	alice := srv.Register(t, "alice")
	roomID := alice.CreateRoom(map[string]any{"preset": "private_chat", "name": "backed up"})
	before := alice.Send(roomID, "written before the backup")
	mxc := upload(t, alice, []byte("media content"), "text/plain", "m.txt")

	// Writes go on during the backup.
	var wg sync.WaitGroup
	var stop atomic.Bool
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			alice.Do("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/during%d", esc(roomID), i),
				map[string]any{"msgtype": "m.text", "body": "during"})
		}
	}()
	b, err := exec.Command(binary, "backup", "--config", srv.ConfigPath, "--out", out).CombinedOutput()
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatalf("backup: %v\n%s", err, b)
	}
	for _, want := range []string{"signing.key", filepath.Join(srv.DataDir, "media"), out} {
		if !strings.Contains(string(b), want) {
			t.Errorf("backup output does not name %s:\n%s", want, b)
		}
	}
	// A second run refuses to overwrite.
	if b, err := exec.Command(binary, "backup", "--config", srv.ConfigPath, "--out", out).CombinedOutput(); err == nil {
		t.Errorf("backup over an existing file succeeded:\n%s", b)
	}

	// The restore: a copy of the data directory (key, media, configuration) with the backup
	// in the database's place, on another port.
	dir := t.TempDir()
	copyDir(t, srv.DataDir, dir, func(name string) bool {
		return !strings.HasPrefix(name, "lattice.db") && name != "lattice.log"
	})
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "lattice.db"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	restored := &Server{t: t, Name: srv.Name, DataDir: dir, ConfigPath: filepath.Join(dir, "lattice.yaml"),
		URL: fmt.Sprintf("http://127.0.0.1:%d", port), logPath: filepath.Join(dir, "lattice.log")}
	oldAddr := strings.TrimPrefix(srv.URL, "http://")
	editConfig(t, restored, `data_dir: "`+srv.DataDir+`"`, `data_dir: "`+dir+`"`)
	editConfig(t, restored, `listen: "`+oldAddr+`"`, fmt.Sprintf(`listen: "127.0.0.1:%d"`, port))
	restored.Start()
	t.Cleanup(restored.Stop)

	again := restored.Login(t, "alice")
	r := again.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(before), nil)
	if str(obj(r.Body, "content"), "body") != "written before the backup" {
		t.Errorf("message after restore: %s", r.Raw)
	}
	name := again.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.name/", nil)
	if str(name.Body, "name") != "backed up" {
		t.Errorf("room name after restore: %s", name.Raw)
	}
	if m := restored.media(t, again.Token, "GET", "/_matrix/client/v1/media/download/"+strings.TrimPrefix(mxc, "mxc://"), nil, ""); m.Status != 200 || string(m.Raw) != "media content" {
		t.Errorf("media after restore: %d %q", m.Status, m.Raw)
	}
}

// copyDir copies the regular files and directories under src whose top-level name keep
// accepts into dst.
func copyDir(t *testing.T, src, dst string, keep func(name string) bool) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if rel == "." {
			return nil
		}
		if !keep(strings.Split(rel, string(filepath.Separator))[0]) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}
