package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Figure is one measured value of a scenario.
type Figure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// Run is one run of one scenario on a fresh server.
type Run struct {
	Scenario string   `json:"scenario"`
	Figures  []Figure `json:"figures"`
	// ServerCPUSeconds and PeakRSSMB cover the server's whole life, setup included (the OS's
	// rusage of the exited process); figures named "server CPU" cover the measured phase only.
	ServerCPUSeconds float64    `json:"server_cpu_seconds"`
	PeakRSSMB        float64    `json:"server_peak_rss_mb"`
	WallSeconds      float64    `json:"wall_seconds"`
	BenchCPUSeconds  float64    `json:"load_generator_cpu_seconds"`
	LoadAvgStart     [3]float64 `json:"loadavg_start"`
	LoadAvgEnd       [3]float64 `json:"loadavg_end"`
	Errors           []string   `json:"errors,omitempty"`
}

// Scenario is the result of one scenario: the median of each figure over its runs, and the runs.
type Scenario struct {
	Name    string   `json:"name"`
	About   string   `json:"about"`
	Medians []Figure `json:"medians"`
	Runs    []Run    `json:"runs"`
}

// Report is everything one benchmark invocation measured; --json writes it.
type Report struct {
	Date      string     `json:"date"`
	Commit    string     `json:"commit,omitempty"`
	Backend   string     `json:"backend"`
	Size      float64    `json:"size"`
	Runs      int        `json:"runs"`
	CPUs      int        `json:"cpus"`
	GoVersion string     `json:"go_version"`
	Seconds   float64    `json:"seconds"`
	Scenarios []Scenario `json:"scenarios"`
}

// figures returns the run's figures followed by its whole-life ones, which every scenario has.
func (r Run) allFigures() []Figure {
	return append(append([]Figure(nil), r.Figures...),
		Figure{"server CPU, whole run", r.ServerCPUSeconds, "s"},
		Figure{"server peak RSS", r.PeakRSSMB, "MB"},
		Figure{"wall time, setup included", r.WallSeconds, "s"},
		Figure{"load generator CPU, whole run", r.BenchCPUSeconds, "s"},
		Figure{"load average (1 min) at end", r.LoadAvgEnd[0], ""},
	)
}

// summarize computes the per-figure medians of runs, in the order of the first run.
func summarize(name, about string, runs []Run) Scenario {
	s := Scenario{Name: name, About: about, Runs: runs}
	values := map[string][]float64{}
	var order []Figure
	for _, r := range runs {
		for _, f := range r.allFigures() {
			if _, ok := values[f.Name]; !ok {
				order = append(order, f)
			}
			values[f.Name] = append(values[f.Name], f.Value)
		}
	}
	for _, f := range order {
		s.Medians = append(s.Medians, Figure{f.Name, median(values[f.Name]), f.Unit})
	}
	return s
}

func median(vs []float64) float64 {
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// printTable writes the human table: one row per figure, then any failed checks.
func printTable(w io.Writer, rep *Report) error {
	fmt.Fprintf(w, "lattice-bench %s, commit %s, %s, size %g, median of %d run(s), %d CPUs\n\n",
		rep.Date, shortCommit(rep.Commit), rep.Backend, rep.Size, rep.Runs, rep.CPUs)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tfigure\t     value\tunit")
	for _, s := range rep.Scenarios {
		for _, f := range s.Medians {
			fmt.Fprintf(tw, "%s\t%s\t%10s\t%s\n", s.Name, f.Name, formatValue(f.Value), f.Unit)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	failed := false
	for _, s := range rep.Scenarios {
		for i, r := range s.Runs {
			for _, e := range r.Errors {
				fmt.Fprintf(w, "FAILED %s (run %d): %s\n", s.Name, i+1, e)
				failed = true
			}
		}
	}
	if !failed {
		fmt.Fprintln(w, "\nall checks passed: every acknowledged message was found exactly once")
	}
	fmt.Fprintf(w, "total time %s\n", time.Duration(rep.Seconds*float64(time.Second)).Round(time.Second))
	return nil
}

// formatValue prints three significant digits, without an exponent.
func formatValue(v float64) string {
	switch {
	case v == float64(int64(v)) && v < 1e15 && v > -1e15:
		return strconv.FormatInt(int64(v), 10)
	case v >= 100 || v <= -100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10 || v <= -10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v >= 1 || v <= -1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	if c == "" {
		return "unknown"
	}
	return c
}

func writeJSON(path string, rep *Report) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// loadAvg reads the 1, 5 and 15 minute load averages of the machine.
func loadAvg() [3]float64 {
	var la [3]float64
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return la
	}
	f := strings.Fields(string(data))
	for i := 0; i < 3 && i < len(f); i++ {
		la[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return la
}
