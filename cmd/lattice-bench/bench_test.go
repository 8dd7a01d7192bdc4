package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTinyRun builds the server and runs two scenarios at a tiny size end to end, so that the
// benchmark keeps working as the server changes: own-room sends (2 senders x 5 messages, every
// one checked through /sync and /messages) and the sync scenario with 3 rooms.
func TestTinyRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin, err := buildLattice(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sz := defaultSizes(1, 2)
	sz.Senders, sz.OwnMessages = 2, 5
	sz.SmallSyncRooms, sz.RoomMessages, sz.NoopSyncs = 3, 2, 20
	scs, err := selectScenarios("send-own,sync-200")
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	jsonPath := filepath.Join(t.TempDir(), "bench.json")
	m := &Main{Lattice: bin, Scenarios: scs, Runs: 1, JSONPath: jsonPath, Workdir: t.TempDir(), Sizes: sz, Log: &log}
	defer m.Close()
	var out bytes.Buffer
	if err := m.Run(ctx, &out); err != nil {
		t.Fatalf("run: %v\nlog:\n%s\noutput:\n%s", err, log.String(), out.String())
	}
	for _, want := range []string{"throughput", "no-op incremental sync p50", "server peak RSS", "all checks passed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}

	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Scenarios) != 2 {
		t.Fatalf("JSON has %d scenarios, want 2", len(rep.Scenarios))
	}
	sends := rep.Scenarios[0].Runs[0]
	if sends.ServerCPUSeconds <= 0 || sends.PeakRSSMB <= 0 {
		t.Errorf("send-own: server CPU %v s, peak RSS %v MB; want both measured", sends.ServerCPUSeconds, sends.PeakRSSMB)
	}
	if f := figure(sends, "messages sent"); f != 10 {
		t.Errorf("send-own sent %v messages, want 10", f)
	}
	if f := figure(rep.Scenarios[1].Runs[0], "rooms"); f != 3 {
		t.Errorf("sync-200 had %v rooms, want 3", f)
	}
}

func figure(r Run, name string) float64 {
	for _, f := range r.Figures {
		if f.Name == name {
			return f.Value
		}
	}
	return -1
}

func TestSelectScenarios(t *testing.T) {
	def, err := selectScenarios("default")
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range def {
		if sc.optIn {
			t.Errorf("default includes opt-in scenario %s", sc.name)
		}
	}
	all, _ := selectScenarios("all")
	if len(all) != len(allScenarios()) || len(def) >= len(all) {
		t.Errorf("default has %d scenarios, all %d, of %d", len(def), len(all), len(allScenarios()))
	}
	if _, err := selectScenarios("send-own,bogus"); err == nil {
		t.Error("an unknown scenario was accepted")
	}
}

func TestMedianAndFormat(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median of 3,1,2 = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median of 4,1,2,3 = %v", m)
	}
	for v, want := range map[float64]string{1234.6: "1235", 12.34: "12.3", 1.234: "1.23", 0.01234: "0.0123", 7: "7"} {
		if got := formatValue(v); got != want {
			t.Errorf("formatValue(%v) = %q, want %q", v, got, want)
		}
	}
}

// TestTinyAppService runs the application service scenarios at a tiny size: every message
// must reach the live service exactly once, and the send workload must run beside a dead
// and a hung one.
func TestTinyAppService(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin, err := buildLattice(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sz := defaultSizes(1, 2)
	sz.Senders, sz.SharedMessages, sz.PacedMessages, sz.Receivers = 2, 5, 3, 2
	scs, err := selectScenarios("appservice,appservice-dead,appservice-hung")
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	m := &Main{Lattice: bin, Scenarios: scs, Runs: 1, Workdir: t.TempDir(), Sizes: sz, Log: &log}
	defer m.Close()
	var out bytes.Buffer
	if err := m.Run(ctx, &out); err != nil {
		t.Fatalf("run: %v\nlog:\n%s\noutput:\n%s", err, log.String(), out.String())
	}
	for _, want := range []string{"events/s pushed to the service", "paced: delivery p99", "all checks passed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}
