package embedded

import (
	"context"
	"database/sql"
	"sync"
	"time"
)

const (
	// checkpointInterval is the least time between two background
	// checkpoints. Each one fsyncs the WAL and the database; a quarter of a
	// second bounds that to a few per second while keeping the WAL small.
	checkpointInterval = 250 * time.Millisecond

	// writerAutoCheckpoint is the WAL size, in pages, at which the write
	// connection checkpoints by itself, on the commit path. It is a
	// backstop for when the background checkpointer cannot keep up; 16384
	// pages of 4 KiB is 64 MiB.
	writerAutoCheckpoint = 16384

	// walSizeLimit truncates the WAL file back to this size when it is
	// reset, after a burst grew it.
	walSizeLimit = 64 << 20
)

// checkpointer copies the WAL into the database off the commit path.
//
// With SQLite's default the committing connection checkpoints whenever the
// WAL passes 1000 pages: a commit now and then pays for copying pages and
// two fsyncs, and the single writer stalls every sender behind it (the
// append benchmark measured batches taking about twice as long). Here the
// writer only signals after each commit, and one goroutine on its own
// connection runs PASSIVE checkpoints, which never block the writer or the
// readers, at most every checkpointInterval.
type checkpointer struct {
	db     *sql.DB
	wrote  chan struct{} // capacity 1: "there were commits"
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startCheckpointer starts the goroutine on db, a connection of its own;
// stop ends it.
func startCheckpointer(db *sql.DB) *checkpointer {
	ctx, cancel := context.WithCancel(context.Background())
	c := &checkpointer{db: db, wrote: make(chan struct{}, 1), cancel: cancel}
	c.wg.Go(func() { c.run(ctx) })
	return c
}

// notify tells the checkpointer that a transaction committed. It never
// blocks.
func (c *checkpointer) notify() {
	select {
	case c.wrote <- struct{}{}:
	default:
	}
}

// stop ends the goroutine (interrupting a running checkpoint) and waits
// for it, then closes its connection.
func (c *checkpointer) stop() error {
	c.cancel()
	c.wg.Wait()
	return c.db.Close()
}

func (c *checkpointer) run(ctx context.Context) {
	timer := time.NewTimer(checkpointInterval)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wrote:
		}
		// A failed checkpoint is retried after the next commit; if they
		// keep failing, the writer's own autocheckpoint takes over.
		_, _ = c.db.ExecContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`)
		timer.Reset(checkpointInterval)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
	}
}
