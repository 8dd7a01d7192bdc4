package storage

import (
	"strings"
	"testing"
)

// TestMigrationsComplete: both databases get every version, in order, and PostgreSQL never
// sees SQLite's AUTOINCREMENT.
func TestMigrationsComplete(t *testing.T) {
	var versions [][]int64
	for _, d := range []dialect{sqliteDialect, postgresDialect} {
		ms, err := migrationsFor(d)
		if err != nil {
			t.Fatal(err)
		}
		var vs []int64
		for i, m := range ms {
			if m.version != int64(i+1) {
				t.Fatalf("%s: migration %s has version %d, want %d", d.name, m.name, m.version, i+1)
			}
			if d.name == "postgres" && strings.Contains(m.body, "AUTOINCREMENT") {
				t.Fatalf("postgres: %s still says AUTOINCREMENT", m.name)
			}
			vs = append(vs, m.version)
		}
		versions = append(versions, vs)
	}
	if len(versions[0]) != len(versions[1]) {
		t.Fatalf("sqlite has %d migrations, postgres %d", len(versions[0]), len(versions[1]))
	}
}
