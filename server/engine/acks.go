package engine

import (
	"context"
	"sync"
	"time"

	"github.com/parley-im/parley/storage"
)

// ackBuffer coalesces device acknowledgements in memory: many acks of one
// device in one conversation become one cursor write. It trades the acks
// of the last flush interval on a crash (the device then gets those
// messages again and de-duplicates them) for far fewer writes.
type ackBuffer struct {
	mu      sync.Mutex
	devices map[string]map[string]uint64 // device id -> conversation id -> seq
}

func newAckBuffer() *ackBuffer {
	return &ackBuffer{devices: make(map[string]map[string]uint64)}
}

func (b *ackBuffer) add(deviceID, conversationID string, seq uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	convs := b.devices[deviceID]
	if convs == nil {
		convs = make(map[string]uint64)
		b.devices[deviceID] = convs
	}
	if seq > convs[conversationID] {
		convs[conversationID] = seq
	}
}

// takeAll removes and returns every buffered cursor.
func (b *ackBuffer) takeAll() []storage.Cursor {
	b.mu.Lock()
	devices := b.devices
	b.devices = make(map[string]map[string]uint64)
	b.mu.Unlock()
	var out []storage.Cursor
	for d, convs := range devices {
		for c, seq := range convs {
			out = append(out, storage.Cursor{DeviceID: d, ConversationID: c, Seq: seq})
		}
	}
	return out
}

// take removes and returns one device's buffered cursors.
func (b *ackBuffer) take(deviceID string) []storage.Cursor {
	b.mu.Lock()
	convs := b.devices[deviceID]
	delete(b.devices, deviceID)
	b.mu.Unlock()
	out := make([]storage.Cursor, 0, len(convs))
	for c, seq := range convs {
		out = append(out, storage.Cursor{DeviceID: deviceID, ConversationID: c, Seq: seq})
	}
	return out
}

// putBack returns cursors whose write failed, so a later flush retries.
func (b *ackBuffer) putBack(cs []storage.Cursor) {
	for _, c := range cs {
		b.add(c.DeviceID, c.ConversationID, c.Seq)
	}
}

// Ack records that a device has every message of a conversation up to seq.
// The cursor is written within AckFlushInterval, or sooner when the device
// reconnects or the engine closes.
func (e *Engine) Ack(deviceID, conversationID string, seq uint64) {
	e.m.Acked()
	e.acks.add(deviceID, conversationID, seq)
}

// FlushAcks writes one device's buffered acks now.
func (e *Engine) FlushAcks(ctx context.Context, deviceID string) error {
	cs := e.acks.take(deviceID)
	if len(cs) == 0 {
		return nil
	}
	if err := e.store.SaveCursors(ctx, cs); err != nil {
		e.acks.putBack(cs)
		return err
	}
	return nil
}

func (e *Engine) ackLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.AckFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			e.flushAllAcks(ctx)
		case <-e.committed:
			e.flushAllAcks(ctx)
			return
		}
	}
}

func (e *Engine) flushAllAcks(ctx context.Context) {
	cs := e.acks.takeAll()
	if len(cs) == 0 {
		return
	}
	if err := e.store.SaveCursors(ctx, cs); err != nil {
		e.acks.putBack(cs)
		e.logger.Warn("flush acks", "count", len(cs), "err", err)
	}
}
