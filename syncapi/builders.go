package syncapi

import (
	"context"
	"runtime"
	"sync"
)

// builders run the building of /sync answers on a few long-lived goroutines, at most
// maxBuilders at a time, while the request's own goroutine only waits.
//
// Two costs of thousands of long-polls come from building their answers where they wait:
//   - Memory. Building an answer goes deep (the SQLite engine's frames are large), and the
//     request's goroutine keeps the stack it grew for as long as it then waits, about 40 KB
//     for each parked long-poll (measured with 1,000 and 2,000 of them: the runtime's stack
//     total did not shrink over repeated collections). On a builder the deep stack is one
//     of a few; the waiting goroutine stays shallow.
//   - Contention. A message into a room of 2,000 long-polling members wakes all of them at
//     once; 2,000 answers built side by side on two cores take as long in all as built a
//     few at a time, but each is done later, their garbage is alive together (peak memory),
//     and the send that woke them waits behind them for the CPU. Builders take the woken
//     long-polls in the order they came (a channel's waiting senders are served first in,
//     first out), and the requests that write do not queue behind them.
type builders struct {
	once sync.Once
	jobs chan func()
	quit chan struct{}
}

// maxBuilders is how many answers are built at once: enough to keep every core busy while
// some builders wait on PostgreSQL.
func maxBuilders() int { return 8 * runtime.GOMAXPROCS(0) }

// do runs f on a builder and returns when it is done; it returns ctx's error without
// running f if ctx ends (the client went away) while f waits for a builder. A panic in f
// is raised again here, on the request's goroutine, where the HTTP server's recovery
// expects it.
func (b *builders) do(ctx context.Context, f func()) error {
	b.once.Do(func() {
		b.jobs, b.quit = make(chan func()), make(chan struct{})
		for range maxBuilders() {
			go b.loop()
		}
	})
	done := make(chan struct{})
	var panicked any
	job := func() {
		defer func() {
			panicked = recover()
			close(done)
		}()
		f()
	}
	select {
	case b.jobs <- job:
	case <-ctx.Done():
		return ctx.Err()
	case <-b.quit:
		// Closed: build here, as if there were no builders.
		f()
		return nil
	}
	<-done
	if panicked != nil {
		panic(panicked)
	}
	return nil
}

func (b *builders) loop() {
	for {
		select {
		case f := <-b.jobs:
			f()
		case <-b.quit:
			return
		}
	}
}

// close stops the builders once the jobs they run are done.
func (b *builders) close() {
	b.once.Do(func() { b.quit = make(chan struct{}) })
	select {
	case <-b.quit:
	default:
		close(b.quit)
	}
}
