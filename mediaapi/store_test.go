package mediaapi

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFileStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	key := mediaKey(testServerName, "abcdef", true)
	if key != "local/ab/cd/abcdef" {
		t.Fatalf("mediaKey = %q", key)
	}
	if n, err := st.Put(ctx, key, strings.NewReader("content")); err != nil || n != 7 {
		t.Fatalf("Put = %d, %v", n, err)
	}
	f, err := st.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if string(got) != "content" {
		t.Errorf("Open read %q", got)
	}

	// A failed Put (here a body cut off by the size limit) leaves neither the file nor a
	// temporary file behind.
	failing := io.MultiReader(strings.NewReader("partial"), errReader{errors.New("too large")})
	if _, err := st.Put(ctx, "local/zz/zz/zzzz", failing); err == nil {
		t.Fatal("Put of a failing reader succeeded")
	}
	var leftovers []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if d != nil && !d.IsDir() && !strings.HasSuffix(path, "abcdef") {
			leftovers = append(leftovers, path)
		}
		return nil
	})
	if len(leftovers) > 0 {
		t.Errorf("files left after a failed Put: %v", leftovers)
	}

	if err := st.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Open(ctx, key); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open after Delete: %v", err)
	}
	if err := st.Delete(ctx, key); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
	for _, bad := range []string{"../escape", "local/../../etc/passwd", "/abs", "a//b", `a\b`} {
		if _, err := st.Put(ctx, bad, strings.NewReader("x")); err == nil {
			t.Errorf("Put(%q) accepted", bad)
		}
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
