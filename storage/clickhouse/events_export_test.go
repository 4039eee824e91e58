package clickhouse

import (
	"context"
	"time"
)

// SetTicks makes w's Run flush on ticks instead of its FlushInterval
// ticker. Call it before Run.
func SetTicks(w *EventWriter, ticks <-chan time.Time) { w.ticks = ticks }

// WrapWrite makes w insert batches through wrap, which gets the real
// write. Call it before Run.
func WrapWrite(w *EventWriter, wrap func(ctx context.Context, batch []Event, write func(context.Context, []Event) error) error) {
	write := w.write
	w.write = func(ctx context.Context, batch []Event) error { return wrap(ctx, batch, write) }
}
