package lattice_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportBoundaries enforces the dependency rules of ARCHITECTURE.md: dependencies point
// down (cmd -> {clientapi, syncapi, federationapi} -> roomserver -> storage), roomserver has
// no HTTP, and the HTTP surfaces do not import each other.
func TestImportBoundaries(t *testing.T) {
	const mod = "github.com/lattice-chat/lattice/"
	forbidden := map[string][]string{
		"storage":              {mod + "roomserver", mod + "clientapi", mod + "syncapi", mod + "federationapi", mod + "cmd", mod + "internal/httputil"},
		"roomserver":           {"net/http", mod + "clientapi", mod + "syncapi", mod + "federationapi", mod + "cmd", mod + "internal/httputil"},
		"adminapi":             {mod + "clientapi", mod + "syncapi", mod + "federationapi", mod + "mediaapi", mod + "pusher", mod + "cmd"},
		"clientapi":            {mod + "adminapi", mod + "syncapi", mod + "federationapi", mod + "mediaapi", mod + "pusher", mod + "cmd"},
		"syncapi":              {mod + "clientapi", mod + "federationapi", mod + "mediaapi", mod + "pusher", mod + "cmd"},
		"federationapi":        {mod + "clientapi", mod + "syncapi", mod + "mediaapi", mod + "pusher", mod + "cmd"},
		"internal/spaces":      {"net/http", mod + "roomserver", mod + "clientapi", mod + "syncapi", mod + "federationapi", mod + "mediaapi", mod + "pusher", mod + "cmd", mod + "internal/httputil"},
		"internal/publicrooms": {"net/http", mod + "roomserver", mod + "clientapi", mod + "syncapi", mod + "federationapi", mod + "mediaapi", mod + "pusher", mod + "cmd", mod + "internal/httputil"},
		"internal/config":      {mod},
		"internal/httputil":    {mod + "roomserver", mod + "clientapi", mod + "syncapi", mod + "federationapi", mod + "cmd"},
		"internal/typing":      {"net/http", mod + "roomserver", mod + "clientapi", mod + "syncapi", mod + "federationapi", mod + "cmd"},
		"internal/presence":    {"net/http", mod + "roomserver", mod + "clientapi", mod + "syncapi", mod + "federationapi", mod + "cmd"},
		"internal/pushrules":   {mod},
		"internal/metrics":     {mod + "roomserver", mod + "clientapi", mod + "syncapi", mod + "federationapi", mod + "mediaapi", mod + "pusher", mod + "adminapi", mod + "cmd"},
		"mediaapi":             {mod + "roomserver", mod + "clientapi", mod + "syncapi", mod + "federationapi", mod + "pusher", mod + "cmd"},
		"pusher":               {mod + "roomserver", mod + "clientapi", mod + "syncapi", mod + "federationapi", mod + "mediaapi", mod + "cmd"},
		"appservice":           {mod + "clientapi", mod + "syncapi", mod + "federationapi", mod + "adminapi", mod + "mediaapi", mod + "pusher", mod + "cmd"},
		"sso":                  {mod + "roomserver", mod + "adminapi", mod + "clientapi", mod + "syncapi", mod + "federationapi", mod + "mediaapi", mod + "pusher", mod + "cmd"},
		"delayedevents":        {"net/http", mod + "adminapi", mod + "clientapi", mod + "syncapi", mod + "federationapi", mod + "mediaapi", mod + "pusher", mod + "cmd", mod + "internal/httputil"},
		"email":                {mod + "roomserver", mod + "adminapi", mod + "clientapi", mod + "syncapi", mod + "federationapi", mod + "mediaapi", mod + "pusher", mod + "cmd"},
		"oauthserver":          {mod + "adminapi", mod + "syncapi", mod + "federationapi", mod + "mediaapi", mod + "pusher", mod + "cmd"},
		"cluster":              {"net/http", mod + "roomserver", mod + "adminapi", mod + "clientapi", mod + "syncapi", mod + "federationapi", mod + "mediaapi", mod + "pusher", mod + "cmd", mod + "internal/httputil"},
		"retention":            {"net/http", mod + "roomserver", mod + "adminapi", mod + "clientapi", mod + "syncapi", mod + "federationapi", mod + "mediaapi", mod + "pusher", mod + "cmd", mod + "internal/httputil"},
	}
	for pkg, bad := range forbidden {
		// Lattice packages are checked transitively, others (net/http) as direct imports:
		// gomatrixserverlib itself pulls in net/http for its federation client.
		deps, err := exec.Command("go", "list", "-deps", "./"+pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		direct, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}`, "./"+pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		var all []string
		for _, d := range strings.Fields(string(deps)) {
			if strings.HasPrefix(d, mod) {
				all = append(all, d)
			}
		}
		all = append(all, strings.Fields(string(direct))...)
		for _, dep := range all {
			if dep == mod+pkg {
				continue
			}
			for _, b := range bad {
				if dep == b || (strings.HasSuffix(b, "/") && strings.HasPrefix(dep, b)) {
					t.Errorf("%s must not depend on %s", pkg, dep)
				}
			}
		}
	}
}
