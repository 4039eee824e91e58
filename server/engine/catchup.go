package engine

import (
	"context"
	"fmt"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/server/hub"
	"github.com/parley-im/parley/server/wire"
	"github.com/parley-im/parley/storage"
)

// catchupPage is how many messages one History read returns during
// catch-up.
const catchupPage = 200

// CatchUp streams to c everything its device has not acknowledged, across
// all of its conversations, then SyncComplete, then releases the live
// frames held back meanwhile and switches c to live mode. c must have been
// registered in the hub before CatchUp starts, so no message committed in
// between is missed.
//
// Each conversation's backlog is bounded by CatchupLimit: beyond it the
// device gets a Gap frame for the older part, which it pages through
// history if it wants. Returns nil when the connection closed first.
func (e *Engine) CatchUp(ctx context.Context, c *hub.Conn) error {
	// Acks still buffered from the device's previous stream would make the
	// backlog longer than it is.
	if err := e.FlushAcks(ctx, c.DeviceID()); err != nil {
		return fmt.Errorf("engine: catch up: flush acks: %w", err)
	}
	backlogs, err := e.store.Backlogs(ctx, c.UserID(), c.DeviceID())
	if err != nil {
		return fmt.Errorf("engine: catch up: backlogs: %w", err)
	}
	for _, b := range backlogs {
		after := b.After
		if limit := uint64(e.cfg.CatchupLimit); b.LastSeq-after > limit {
			gapTo := b.LastSeq - limit
			gap := &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Gap{Gap: &parleyv1.Gap{
				ConversationId: b.ConversationID, FromSeq: after, ToSeq: gapTo,
			}}}
			if !c.Push(ctx, gap) {
				return nil
			}
			after = gapTo
		}
		for after < b.LastSeq {
			page, _, err := e.store.History(ctx, storage.HistoryQuery{
				ConversationID: b.ConversationID,
				Anchor:         after,
				Direction:      storage.After,
				Limit:          catchupPage,
			})
			if err != nil {
				return fmt.Errorf("engine: catch up %s: %w", b.ConversationID, err)
			}
			if len(page) == 0 {
				break
			}
			for _, m := range page {
				if !c.Push(ctx, wire.MessageFrame(wire.Message(m))) {
					return nil
				}
				after = m.Seq
			}
		}
	}
	done := &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_SyncComplete{SyncComplete: &parleyv1.SyncComplete{}}}
	if !c.Push(ctx, done) {
		return nil
	}
	c.EndSync(ctx)
	return nil
}
