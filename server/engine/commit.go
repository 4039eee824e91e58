package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/analytics"
)

// op is one unit of work for the committer: either a message to append
// (batched with its neighbours) or an exclusive write that runs alone.
type op struct {
	msg   storage.NewMessage
	reply chan sendReply // buffered 1; for message ops

	exclusive func(ctx context.Context) (fanoutItem, error)
	done      chan error // buffered 1; for exclusive ops
}

// SendResult is the outcome of Send.
type SendResult = storage.AppendResult

type sendReply struct {
	res SendResult
	err error // the commit failed: nothing in the batch was written
}

// Send commits one message and returns it once it is durable. Concurrent
// sends from all connections are committed together in batches. A result
// with Err set is a per-message rejection (storage.ErrNotMember); an error
// return means the commit itself failed, or ctx ended before the message
// was handed to the committer. Once handed over, Send waits for the outcome
// whatever ctx does (the engine answers everything submitted, even on
// Close), so a caller never loses track of a committed message.
func (e *Engine) Send(ctx context.Context, m storage.NewMessage) (SendResult, error) {
	wait, err := e.Submit(ctx, m)
	if err != nil {
		return SendResult{}, err
	}
	return wait()
}

// Submit hands a message to the committer and returns a function that
// waits for its outcome (as Send describes). Messages submitted one after
// another from one goroutine are committed in that order, which is what
// keeps a device's pipelined sends in order. The wait function must be
// called exactly once; it does not observe ctx, since the commit outcome
// always arrives (the engine answers everything submitted, even on Close).
func (e *Engine) Submit(ctx context.Context, m storage.NewMessage) (func() (SendResult, error), error) {
	o := &op{msg: m, reply: make(chan sendReply, 1)}
	if err := e.enqueue(ctx, o); err != nil {
		return nil, err
	}
	return func() (SendResult, error) {
		r := <-o.reply
		return r.res, r.err
	}, nil
}

// runExclusive runs fn on the committer goroutine, between batches, and
// fans out what it returns in commit order.
func (e *Engine) runExclusive(ctx context.Context, fn func(ctx context.Context) (fanoutItem, error)) error {
	o := &op{exclusive: fn, done: make(chan error, 1)}
	if err := e.enqueue(ctx, o); err != nil {
		return err
	}
	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *Engine) enqueue(ctx context.Context, o *op) error {
	if e.closing.Load() {
		return ErrClosed
	}
	select {
	case e.submit <- o:
		return nil
	case <-e.quit:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// commitLoop takes whatever is waiting, up to BatchSize messages, commits
// it in one transaction, answers the senders and queues the fan-out.
func (e *Engine) commitLoop(ctx context.Context) {
	defer close(e.committed)
	defer close(e.fanout)
	batch := make([]*op, 0, e.cfg.BatchSize)
	var held *op // an exclusive op that ended the current batch
	for {
		if held == nil {
			select {
			case o := <-e.submit:
				held = o
			case <-e.quit:
				e.drainSubmit(ctx, batch[:0])
				return
			}
		}
		batch = batch[:0]
		// Gather message ops until the batch is full, the queue is empty
		// (after lingering, when configured), or an exclusive op comes up;
		// that one waits for the next round.
		var linger *time.Timer
		for held != nil && held.exclusive == nil {
			batch = append(batch, held)
			held = nil
			if len(batch) == e.cfg.BatchSize {
				break
			}
			select {
			case o := <-e.submit:
				held = o
				continue
			default:
			}
			if e.cfg.CommitLinger <= 0 {
				break
			}
			if linger == nil {
				linger = time.NewTimer(e.cfg.CommitLinger)
			}
			select {
			case o := <-e.submit:
				held = o
			case <-linger.C:
			}
		}
		if linger != nil {
			linger.Stop()
		}
		if len(batch) > 0 {
			e.commitBatch(ctx, batch)
			continue
		}
		if held != nil {
			o := held
			held = nil
			e.commitExclusive(ctx, o)
		}
	}
}

// drainSubmit serves what was queued before Close, so no caller waits
// forever and nothing handed over is dropped.
func (e *Engine) drainSubmit(ctx context.Context, batch []*op) {
	for {
		select {
		case o := <-e.submit:
			if o.exclusive != nil {
				if len(batch) > 0 {
					e.commitBatch(ctx, batch)
					batch = batch[:0]
				}
				e.commitExclusive(ctx, o)
				continue
			}
			batch = append(batch, o)
			if len(batch) == e.cfg.BatchSize {
				e.commitBatch(ctx, batch)
				batch = batch[:0]
			}
		default:
			if len(batch) > 0 {
				e.commitBatch(ctx, batch)
			}
			return
		}
	}
}

func (e *Engine) commitBatch(ctx context.Context, batch []*op) {
	msgs := make([]storage.NewMessage, len(batch))
	for i, o := range batch {
		msgs[i] = o.msg
	}
	results, err := e.store.AppendMessages(ctx, msgs)
	if err == nil && len(results) != len(batch) {
		err = fmt.Errorf("engine: store returned %d results for %d messages", len(results), len(batch))
	}
	if err != nil {
		e.m.Committed(len(batch), 0, 0, true)
		for _, o := range batch {
			o.reply <- sendReply{err: fmt.Errorf("engine: commit batch: %w", err)}
		}
		return
	}
	// Senders are answered by the fan-out, after their messages were handed
	// to the connected devices: a sender's SendAck (see parley.v1.SendAck)
	// is then on its stream before its Send returns.
	item := fanoutItem{replies: make([]pendingReply, len(results))}
	for i, r := range results {
		switch {
		case r.Err != nil:
		case r.Duplicate:
			item.redeliver = append(item.redeliver, r.Message)
		default:
			item.messages = append(item.messages, r.Message)
			if e.events != nil {
				m := &r.Message
				e.events.Record(analytics.Event{
					Kind: analytics.EventMessageSent, At: m.CreatedAt, UserID: m.SenderID,
					DeviceID: m.SenderDeviceID, ConversationID: m.ConversationID, Seq: m.Seq,
				})
			}
		}
		item.replies[i] = pendingReply{to: batch[i].reply, reply: sendReply{res: r}}
	}
	e.m.Committed(len(batch), len(item.messages), len(item.redeliver), false)
	e.fanout <- item
}

func (e *Engine) commitExclusive(ctx context.Context, o *op) {
	item, err := o.exclusive(ctx)
	o.done <- err
	if err == nil && (len(item.messages) > 0 || item.invalidate != "" || len(item.frames) > 0) {
		e.fanout <- item
	}
}
