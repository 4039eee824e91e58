package engine

import (
	"context"
	"time"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/analytics"
)

// Recall erases a message and appends notice, ordered with the
// conversation's other writes, and fans the notice out. The caller checks
// who may recall.
func (e *Engine) Recall(ctx context.Context, conversationID string, seq uint64, notice storage.NewMessage) (storage.Message, error) {
	var committed storage.Message
	err := e.runExclusive(ctx, func(ctx context.Context) (fanoutItem, error) {
		_, n, err := e.store.RecallMessage(ctx, conversationID, seq, notice)
		if err != nil {
			return fanoutItem{}, err
		}
		committed = n
		return fanoutItem{messages: []storage.Message{n}}, nil
	})
	return committed, err
}

// CreateGroup creates a group and fans its opening notice out to the
// members.
func (e *Engine) CreateGroup(ctx context.Context, g storage.NewGroup) (storage.Conversation, error) {
	var conv storage.Conversation
	err := e.runExclusive(ctx, func(ctx context.Context) (fanoutItem, error) {
		c, notice, err := e.store.CreateGroup(ctx, g)
		if err != nil {
			return fanoutItem{}, err
		}
		conv = c
		return fanoutItem{messages: []storage.Message{notice}, invalidate: c.ID}, nil
	})
	return conv, err
}

// AddMembers adds users to a group; the notice reaches old and new members.
func (e *Engine) AddMembers(ctx context.Context, conversationID string, userIDs []string, maxMembers int, notice storage.NewMessage) (storage.Message, error) {
	var committed storage.Message
	err := e.runExclusive(ctx, func(ctx context.Context) (fanoutItem, error) {
		n, err := e.store.AddMembers(ctx, conversationID, userIDs, maxMembers, notice)
		if err != nil {
			return fanoutItem{}, err
		}
		committed = n
		return fanoutItem{messages: []storage.Message{n}, invalidate: conversationID}, nil
	})
	return committed, err
}

// RemoveMember removes a user from a group; the notice reaches the
// remaining members and the removed user.
func (e *Engine) RemoveMember(ctx context.Context, conversationID, userID string, notice storage.NewMessage) (storage.Message, error) {
	var committed storage.Message
	err := e.runExclusive(ctx, func(ctx context.Context) (fanoutItem, error) {
		n, err := e.store.RemoveMember(ctx, conversationID, userID, notice)
		if err != nil {
			return fanoutItem{}, err
		}
		committed = n
		return fanoutItem{messages: []storage.Message{n}, invalidate: conversationID, extra: []string{userID}}, nil
	})
	return committed, err
}

// MarkRead raises a member's read mark and, when it moved, tells every
// member's devices (the reader's other devices included) with a Receipt.
func (e *Engine) MarkRead(ctx context.Context, conversationID, userID string, seq uint64) (uint64, error) {
	last, changed, err := e.store.MarkRead(ctx, conversationID, userID, seq)
	if err != nil || !changed {
		return last, err
	}
	e.recordRead(ctx, conversationID, userID, last)
	f := &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Receipt{Receipt: &parleyv1.Receipt{
		ConversationId: conversationID, UserId: userID, LastReadSeq: last,
	}}}
	if err := e.broadcast(ctx, conversationID, "", f); err != nil {
		// The read mark is stored; only the live notification is lost.
		e.logger.Warn("broadcast receipt", "conversation_id", conversationID, "err", err)
	}
	return last, nil
}

// Typing tells the other members' devices that userID is (not) typing.
// Nothing is stored.
func (e *Engine) Typing(ctx context.Context, conversationID, userID string, typing bool) error {
	f := &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Typing{Typing: &parleyv1.Typing{
		ConversationId: conversationID, UserId: userID, Typing: typing,
	}}}
	return e.broadcast(ctx, conversationID, userID, f)
}

// recordRead records a message_read event for the message at the new read
// mark seq, with its send→read latency: the time from its commit to now.
// One event per moved mark, for its newest message: the messages below it
// were read at the same time, and only the newest's latency says how long
// the reader took to catch up. It costs one indexed read.
func (e *Engine) recordRead(ctx context.Context, conversationID, userID string, seq uint64) {
	if e.events == nil {
		return
	}
	msgs, _, err := e.store.History(ctx, storage.HistoryQuery{
		ConversationID: conversationID, Anchor: seq + 1, Direction: storage.Before, Limit: 1,
	})
	if err != nil || len(msgs) == 0 || msgs[0].Seq != seq {
		// The read mark is stored; only an analytics event is lost.
		if err != nil {
			e.logger.Warn("read event: load message", "conversation_id", conversationID, "err", err)
		}
		return
	}
	now := time.Now()
	e.events.Record(analytics.Event{
		Kind: analytics.EventMessageRead, At: now, UserID: userID, ConversationID: conversationID,
		Seq: seq, Latency: now.Sub(msgs[0].CreatedAt),
	})
}
