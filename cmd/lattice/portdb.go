package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/lattice-chat/lattice/storage"
)

// runPortDB copies the SQLite database of a stopped server into a new PostgreSQL database.
func runPortDB(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("port-db", "port-db --from FILE --to URL", stderr)
	from := fs.String("from", "", "SQLite database file of the stopped server (required), e.g. DATA_DIR/lattice.db")
	to := fs.String("to", "", "URL of a new, empty PostgreSQL database (required): postgres://USER:PASSWORD@HOST/DBNAME")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *from == "" || *to == "" {
		return errors.New("port-db: --from and --to are required")
	}
	path := strings.TrimPrefix(*from, "sqlite:")
	if st, err := os.Stat(path); err != nil {
		return fmt.Errorf("port-db: source database: %w", err)
	} else if !st.Mode().IsRegular() {
		return fmt.Errorf("port-db: source database %s is not a file", path)
	}
	if !strings.HasPrefix(*to, "postgres://") && !strings.HasPrefix(*to, "postgresql://") {
		return errors.New("port-db: --to must be a postgres:// URL")
	}
	src, err := storage.Open(ctx, "sqlite:"+path, 2)
	if err != nil {
		return fmt.Errorf("port-db: open source: %w", err)
	}
	defer src.Close()
	dst, err := storage.Open(ctx, *to, 4)
	if err != nil {
		return fmt.Errorf("port-db: open target: %w", err)
	}
	defer dst.Close()

	start := time.Now()
	p := &portProgress{out: stdout, tty: isTerminal(stdout)}
	err = storage.Port(ctx, src, dst, p.update)
	p.endTable()
	if err != nil {
		return err
	}
	var rows int64
	fmt.Fprintln(stdout, "Verified row counts (source = target):")
	for _, c := range p.tables {
		fmt.Fprintf(stdout, "  %-24s %10d\n", c.name, c.rows)
		rows += c.rows
	}
	fmt.Fprintf(stdout, "Ported %d rows in %d tables in %s.\n", rows, len(p.tables), time.Since(start).Round(time.Millisecond))
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// portProgress shows how far a port is: on a terminal a bar per table, otherwise a line per
// table when it is done, and at most one a second while it is copied.
type portProgress struct {
	out    io.Writer
	tty    bool
	tables []tableRows // tables started so far, in order

	// The current table.
	table   string
	total   int64
	started time.Time
	printed time.Time // when the last plain line was printed
	bar     *progressbar.ProgressBar
}

type tableRows struct {
	name string
	rows int64
}

// update is storage.Port's progress callback.
func (p *portProgress) update(table string, done, total int64) {
	now := time.Now()
	if table != p.table {
		p.endTable()
		p.table, p.total, p.started, p.printed = table, total, now, now
		p.tables = append(p.tables, tableRows{name: table})
		if p.tty && total > 0 {
			p.bar = progressbar.NewOptions64(total,
				progressbar.OptionSetWriter(p.out),
				progressbar.OptionSetDescription(fmt.Sprintf("%-24s", table)),
				progressbar.OptionSetWidth(30),
				progressbar.OptionShowCount(),
				progressbar.OptionShowIts(),
				progressbar.OptionSetItsString("rows"),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionSetRenderBlankState(true),
				progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.out) }),
			)
		}
	}
	p.tables[len(p.tables)-1].rows = done
	switch {
	case p.bar != nil:
		_ = p.bar.Set64(done)
	case done == total && (!p.tty || total == 0):
		p.printLine(done, now)
	case !p.tty && now.Sub(p.printed) >= time.Second:
		p.printLine(done, now)
	}
}

// endTable finishes the current table's bar, which stays on the screen.
func (p *portProgress) endTable() {
	if p.bar != nil && !p.bar.IsFinished() {
		// The port stopped part way: keep the bar where it was; Exit ends its line.
		_ = p.bar.Exit()
	}
	p.bar = nil
}

// printLine prints "events: 5000/12000 rows (3400 rows/s)", or on a terminal, for an empty
// table, a line that lines up with the bars.
func (p *portProgress) printLine(done int64, now time.Time) {
	p.printed = now
	line := fmt.Sprintf("%s: %d/%d rows", p.table, done, p.total)
	if p.tty {
		line = fmt.Sprintf("%-24s      (0/0 rows)", p.table)
	}
	if d := now.Sub(p.started); d >= 100*time.Millisecond {
		line += fmt.Sprintf(" (%.0f rows/s)", float64(done)/d.Seconds())
	}
	fmt.Fprintln(p.out, line)
}
