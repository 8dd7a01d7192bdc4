package mediaapi

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportBoundaries enforces the package doc: mediaapi depends on storage and the shared
// plumbing only, never on the other HTTP surfaces or the room server.
func TestImportBoundaries(t *testing.T) {
	const mod = "github.com/lattice-chat/lattice/"
	deps, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(deps)) {
		for _, bad := range []string{"clientapi", "syncapi", "federationapi", "roomserver", "cmd"} {
			if dep == mod+bad || strings.HasPrefix(dep, mod+bad+"/") {
				t.Errorf("mediaapi must not depend on %s", dep)
			}
		}
	}
}
