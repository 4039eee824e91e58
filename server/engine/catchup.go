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
// catch-up and repair.
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
	e.m.CatchUp()
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
		if !e.fill(ctx, c, b.ConversationID, b.After, b.LastSeq, 0) {
			return nil
		}
		// Every conversation gets a position, so the connection can tell
		// a live message that skipped ahead from the next one.
		c.SetLast(b.ConversationID, b.LastSeq)
	}
	done := &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_SyncComplete{SyncComplete: &parleyv1.SyncComplete{}}}
	if !c.Push(ctx, done) {
		return nil
	}
	c.Release(ctx)
	return nil
}

// Repair fills what c's live frames skipped (see hub.Conn) from the store,
// then releases the frames it held. Run it when c.Repairs() fires; it
// returns nil when the connection closed first, and an error when the
// store failed (the caller closes the connection, and the device catches
// up when it reconnects).
func (e *Engine) Repair(ctx context.Context, c *hub.Conn) error {
	gap, ok, recheck := c.TakeRepair()
	e.m.Repair(ok, recheck)
	if recheck {
		if err := e.recheck(ctx, c); err != nil {
			return err
		}
	}
	if ok {
		if err := e.repairGap(ctx, c, gap); err != nil {
			return err
		}
	}
	c.Release(ctx)
	return nil
}

// repairGap pushes the messages of gap.ConversationID between what c has
// and the first held message.
func (e *Engine) repairGap(ctx context.Context, c *hub.Conn, gap hub.Gap) error {
	joined, member, err := e.joinedSeq(ctx, gap.ConversationID, c.UserID())
	if err != nil {
		return fmt.Errorf("engine: repair %s: members: %w", gap.ConversationID, err)
	}
	if !member {
		// No longer a member (the held frame is the removal notice): the
		// device may not read what it missed; let the notice through.
		c.SetLast(gap.ConversationID, gap.Before-1)
		return nil
	}
	// The position is read now, not when the gap was found: a recheck may
	// have filled part of it since.
	after, known := c.Last(gap.ConversationID)
	if !known || after+1 < joined {
		// A device that joined after catch-up has nothing before its join
		// point; one that left and rejoined has nothing in between.
		after = max(joined, 1) - 1
	}
	if !e.fill(ctx, c, gap.ConversationID, after, gap.Before-1, joined) {
		return nil
	}
	c.SetLast(gap.ConversationID, gap.Before-1)
	return nil
}

// joinedSeq returns where a member joined a conversation. The cached list
// may predate the user's joining through another process; only a fresh
// read may say the user is not a member.
func (e *Engine) joinedSeq(ctx context.Context, conversationID, userID string) (seq uint64, member bool, err error) {
	find := func(ms []storage.Member) (uint64, bool) {
		for _, m := range ms {
			if m.UserID == userID {
				return m.JoinedSeq, true
			}
		}
		return 0, false
	}
	members, err := e.members.get(ctx, e.store, conversationID, 0)
	if err != nil {
		return 0, false, err
	}
	if seq, ok := find(members); ok {
		return seq, true, nil
	}
	if members, err = e.store.ListMembers(ctx, conversationID); err != nil {
		return 0, false, err
	}
	seq, member = find(members)
	return seq, member, nil
}

// recheck compares every conversation of c's user with what c has handed
// to the device, and pushes whatever is missing.
func (e *Engine) recheck(ctx context.Context, c *hub.Conn) error {
	backlogs, err := e.store.Backlogs(ctx, c.UserID(), c.DeviceID())
	if err != nil {
		return fmt.Errorf("engine: recheck: %w", err)
	}
	for _, b := range backlogs {
		after := b.After
		if last, ok := c.Last(b.ConversationID); ok {
			after = max(after, last)
		}
		if !e.fill(ctx, c, b.ConversationID, after, b.LastSeq, 0) {
			return nil
		}
		c.SetLast(b.ConversationID, b.LastSeq)
	}
	return nil
}

// fill pushes the messages of a conversation in (after, upTo] to c, the
// oldest beyond CatchupLimit replaced by a Gap frame, and none below
// minSeq. It returns false when the connection closed or the store failed
// (the error is logged: the connection is then closed so the device
// catches up again).
func (e *Engine) fill(ctx context.Context, c *hub.Conn, conversationID string, after, upTo, minSeq uint64) bool {
	if limit := uint64(e.cfg.CatchupLimit); upTo > after && upTo-after > limit {
		gapTo := upTo - limit
		gap := &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Gap{Gap: &parleyv1.Gap{
			ConversationId: conversationID, FromSeq: after, ToSeq: gapTo,
		}}}
		if !c.Push(ctx, gap) {
			return false
		}
		e.m.Gap()
		after = gapTo
	}
	for after < upTo {
		page, _, err := e.store.History(ctx, storage.HistoryQuery{
			ConversationID: conversationID,
			Anchor:         after,
			Direction:      storage.After,
			Limit:          min(catchupPage, int(upTo-after)),
			MinSeq:         minSeq,
		})
		if err != nil {
			e.logger.Warn("read backlog", "conversation_id", conversationID, "err", err)
			c.Close(fmt.Errorf("engine: read backlog of %s: %w", conversationID, err))
			return false
		}
		if len(page) == 0 {
			break
		}
		for _, m := range page {
			if m.Seq > upTo {
				return true
			}
			if !c.Push(ctx, wire.MessageFrame(wire.Message(m))) {
				return false
			}
			after = m.Seq
		}
	}
	return true
}
