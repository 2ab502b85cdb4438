package tail

import (
	"context"
	"fmt"
	"time"

	"github.com/paasmeter/paasmeter/internal/failpoint"
	"github.com/paasmeter/paasmeter/runtime/ship"
)

// The spool writer gathers the lines of every container into one append (one
// fsync) per writeEvery, or sooner when writeBatchLines or writeBatchBytes
// are reached. The byte bound keeps an append far below the smallest spool
// (1 MiB), which must always be able to take one.
const (
	writeEvery      = 100 * time.Millisecond
	writeBatchLines = 1000
	writeBatchBytes = 256 << 10
)

// writeLoop appends the lines the followers hand over to the spool, in the
// order they were handed over, until ctx ends; then it tries once to append
// what it still holds.
func (t *Tailer) writeLoop(ctx context.Context) {
	var batch [][]byte
	size := 0
	tick := time.NewTicker(writeEvery)
	defer tick.Stop()
	flush := func() {
		if len(batch) > 0 {
			t.append(ctx, batch)
			batch, size = nil, 0
		}
	}
	for {
		select {
		case b := <-t.lines:
			batch, size = append(batch, b), size+len(b)
			if len(batch) >= writeBatchLines || size >= writeBatchBytes {
				flush()
			}
		case <-tick.C:
			flush()
		case <-ctx.Done():
			for len(t.lines) > 0 {
				batch = append(batch, <-t.lines)
			}
			flush()
			return
		}
	}
}

// append spools lines, waiting while the spool cannot take them: meanwhile
// the followers stop reading, and the lines wait in the engine's files. Once
// ctx ended it tries once more and gives up: the next agent reads the lines
// again.
func (t *Tailer) append(ctx context.Context, lines [][]byte) {
	for {
		err := t.roomForLogs()
		if err == nil {
			_, err = t.o.Spool.Append(ship.KindLog, lines...)
		}
		if err == nil {
			t.o.Failpoints.Hit(failpoint.AfterSpoolWrite)
			if t.o.Wake != nil {
				select {
				case t.o.Wake <- struct{}{}:
				default:
				}
			}
			return
		}
		t.m.spoolWaits.Inc()
		t.log.Warn("log lines wait for room in the spool", "lines", len(lines), "err", err)
		if ctx.Err() != nil {
			return
		}
		sleep(ctx, retryDelay)
	}
}

// roomForLogs reports whether log lines may be appended now.
func (t *Tailer) roomForLogs() error {
	if t.o.SpoolMaxBytes <= 0 {
		return nil
	}
	share := t.o.SpoolMaxBytes / 4 * 3
	if b := t.o.Spool.Stats().Bytes; b >= share {
		return fmt.Errorf("the spool holds %d bytes: log lines may use %d of its %d", b, share, t.o.SpoolMaxBytes)
	}
	return nil
}
