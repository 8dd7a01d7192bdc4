// Package cluster lets several Lattice processes serve one database, and keeps a second
// process off a database that only one may serve. It is the first slice of scaling out
// (issue 15); what is and is not cluster-safe yet is listed in the README ("Scaling out
// (preview)").
//
// What it does:
//
//   - SQLite: LockFile holds an OS lock (flock) on a file beside the database for as long as
//     the process runs, so that a second `lattice serve` on the same file refuses to start.
//     The kernel drops the lock when the process ends, SIGKILL included.
//   - PostgreSQL: storage.DB.HoldServeLock is the same guard (an advisory lock held by a
//     session): exclusive for a lone server, shared for the members of a cluster
//     (database.cluster: true), so lone servers and cluster members never mix.
//   - Bus carries the /sync notifier's wake-ups between the processes of a cluster with
//     LISTEN/NOTIFY: a write committed on process A wakes the long-polls on process B.
//   - roomserver (Config.Cluster) takes a room's input lock in PostgreSQL for the whole of
//     an input, and reads the room again when another process wrote to it meanwhile.
//
// Stream positions and visibility. A since-token must never skip an event, so a process may
// only tell its clients a position p once every position below p is committed and visible.
// Lattice needs no bookkeeping of in-flight positions for this, because its positions
// already commit in the order they are allocated, across processes too: room events take
// their NIDs under one transaction-scoped advisory lock (storage LockEventStream), and the
// other streams are rows of the streams table whose UPDATE ... RETURNING locks the row until
// the commit (storage NextStreamPos). PostgreSQL makes a transaction visible before it
// releases its locks, so when a notification for position p arrives, p and everything below
// it are visible to any new statement. The only unordered allocation, events stored bare
// (outliers, rejected events, which no stream serves), is why a process that starts reads
// the room event position under the same lock (storage SettledMaxEventNID). NOTIFY adds
// nothing to this: it is sent after the commit, and only tells the other processes where
// the streams now are and whose long-polls to wake.
//
// It imports storage only; cmd/lattice wires it to the syncapi notifier.
package cluster

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// LockFile takes an exclusive OS lock on path (created if missing) without waiting, and
// returns the function that lets it go. It fails with a message naming the database when
// another process holds it. The lock belongs to the open file, so it is released when the
// process ends however it ends.
func LockFile(path, database string) (release func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock file %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another lattice process is already serving the SQLite database %s (it holds %s): "+
				"SQLite serves one process; stop the other one, or move to PostgreSQL (lattice port-db) to run several", database, path)
		}
		return nil, fmt.Errorf("lock file %s: %w", path, err)
	}
	// The PID is for the operator's eyes only; the lock is what counts.
	_ = f.Truncate(0)
	_, _ = fmt.Fprintf(f, "%d\n", os.Getpid())
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
