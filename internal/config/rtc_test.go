package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRTCConfig: transports load in order as written; a transport without a type, a
// LiveKit one without its service URL and limits out of range are reported.
func TestRTCConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	yaml := "server_name: a.b\ndata_dir: .\nrtc:\n  transports:\n    - type: livekit\n      livekit_service_url: https://jwt.a.b\n" +
		"    - type: other\n      extra: 1\ndelayed_events:\n  max_delay: 30s\n  max_per_user: 5\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if ts := cfg.RTC.Transports; len(ts) != 2 || ts[0]["livekit_service_url"] != "https://jwt.a.b" || ts[1]["type"] != "other" {
		t.Errorf("transports: %v", ts)
	}
	if cfg.DelayedEvents.MaxDelay != 30*time.Second || cfg.DelayedEvents.MaxPerUser != 5 {
		t.Errorf("delayed_events: %+v", cfg.DelayedEvents)
	}

	bad := Default()
	bad.ServerName, bad.DataDir = "a.b", dir
	bad.RTC.Transports = []map[string]any{{"livekit_service_url": "x"}, {"type": "livekit"}}
	bad.DelayedEvents = DelayedEvents{MaxDelay: 0, MaxPerUser: 0}
	err = bad.Validate()
	for _, want := range []string{"rtc.transports[0]: type", "rtc.transports[1]: a livekit transport needs livekit_service_url",
		"delayed_events.max_delay", "delayed_events.max_per_user"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
}
