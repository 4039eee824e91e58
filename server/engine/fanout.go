package engine

import (
	"context"
	"sync"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/server/hub"
	"github.com/parley-im/parley/server/wire"
	"github.com/parley-im/parley/storage"
)

// fanoutItem is what one commit hands to the fan-out goroutine.
type fanoutItem struct {
	// messages are committed messages, in seq order per conversation.
	messages []storage.Message
	// invalidate names a conversation whose membership changed; its cached
	// member list is dropped before these messages go out.
	invalidate string
	// extra are users who get the messages besides the current members
	// (a removed member learns of the removal).
	extra []string
	// frames are delivered as they are to extra (no member lookup).
	frames []*parleyv1.ServerFrame
	// redeliver are messages a sender retried (duplicates): their first
	// fan-out may never have happened (the process that committed them
	// died first), so they go out again; devices drop what they have.
	redeliver []storage.Message
	// replies answer the senders once everything above was delivered.
	replies []pendingReply
}

type pendingReply struct {
	to    chan sendReply
	reply sendReply
}

// fanoutLoop delivers committed messages to every device of every
// member, in commit order: one Route call per commit, which in a cluster
// is one round trip to the broker. It never blocks on a device: the hub
// disconnects devices that cannot keep up.
func (e *Engine) fanoutLoop(ctx context.Context) {
	for item := range e.fanout {
		if item.invalidate != "" {
			e.members.invalidate(item.invalidate)
		}
		var ds []hub.Delivery
		for _, m := range item.messages {
			ds = e.appendMessageDelivery(ctx, ds, m, item.extra, true)
		}
		for _, m := range item.redeliver {
			ds = e.appendMessageDelivery(ctx, ds, m, nil, false)
		}
		for _, f := range item.frames {
			ds = append(ds, hub.Delivery{Frame: f, Users: item.extra})
		}
		if len(ds) > 0 {
			e.router.Route(ctx, ds)
		}
		for _, r := range item.replies {
			r.to <- r.reply
		}
	}
}

// appendMessageDelivery adds the delivery of m to its members (and extra
// users) to ds. With ack, the sending device gets its own message as the
// SendAck, in its place in the stream: one frame instead of an
// acknowledgement and an echo, and the device learns of the commit in seq
// order.
func (e *Engine) appendMessageDelivery(ctx context.Context, ds []hub.Delivery, m storage.Message, extra []string, ack bool) []hub.Delivery {
	msg := wire.Message(m)
	d := hub.Delivery{Frame: wire.MessageFrame(msg)}
	if ack && m.ClientMsgID != "" && m.SenderDeviceID != "" {
		d.Ack = &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_SendAck{
			SendAck: &parleyv1.SendAck{ClientMsgId: m.ClientMsgID, Message: msg},
		}}
		d.AckUser, d.AckDevice = m.SenderID, m.SenderDeviceID
	}
	// A list older than the membership the message was committed under
	// (changed through another process) is reloaded.
	members, err := e.members.get(ctx, e.store, m.ConversationID, m.MembersSeq)
	if err != nil {
		// The message is committed; devices that miss it now get it from
		// their cursor on the next catch-up. The sender still learns that
		// it was committed.
		e.logger.Warn("fan-out: load members", "conversation_id", m.ConversationID, "err", err)
		members = nil
	}
	d.Users = make([]string, 0, len(members)+len(extra))
	for _, mem := range members {
		// A member who joined after this message (the cache may already
		// hold the new membership) must not see it.
		if mem.JoinedSeq <= m.Seq {
			d.Users = append(d.Users, mem.UserID)
		}
	}
	d.Users = append(d.Users, extra...)
	return append(ds, d)
}

// broadcast hands a frame to the devices of every member of a
// conversation, except exceptUser when set.
func (e *Engine) broadcast(ctx context.Context, conversationID, exceptUser string, f *parleyv1.ServerFrame) error {
	members, err := e.members.get(ctx, e.store, conversationID, 0)
	if err != nil {
		return err
	}
	d := hub.Delivery{Frame: f, Users: make([]string, 0, len(members))}
	for _, mem := range members {
		if mem.UserID != exceptUser {
			d.Users = append(d.Users, mem.UserID)
		}
	}
	e.router.Route(ctx, []hub.Delivery{d})
	return nil
}

// memberCache holds member lists of recently active conversations.
// Membership changes committed here invalidate an entry (they all pass
// through the committer); each entry also records the membership version
// (storage.Message.MembersSeq) it is known to reflect, so a message
// committed under a newer membership, changed by another process of a
// cluster, reloads it. Entries are otherwise kept until the cache is full,
// when an arbitrary half is dropped.
type memberCache struct {
	max     int
	mu      sync.RWMutex
	entries map[string]memberEntry
	// gen counts invalidations; a load that raced one is not cached, so a
	// stale list cannot outlive the change that made it stale.
	gen uint64
}

type memberEntry struct {
	members []storage.Member
	// version is the newest membership version the list is known to
	// include; a list read after a message was committed includes every
	// change made before that message.
	version uint64
}

func newMemberCache(max int) *memberCache {
	if max < 1 {
		max = 1
	}
	return &memberCache{max: max, entries: make(map[string]memberEntry)}
}

// get returns a conversation's members as of at least membership version
// atLeast (0: whatever is cached).
func (c *memberCache) get(ctx context.Context, store Store, conversationID string, atLeast uint64) ([]storage.Member, error) {
	c.mu.RLock()
	entry, ok := c.entries[conversationID]
	gen := c.gen
	c.mu.RUnlock()
	if ok && entry.version >= atLeast {
		return entry.members, nil
	}
	ms, err := store.ListMembers(ctx, conversationID)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return ms, nil
	}
	if len(c.entries) >= c.max {
		n := 0
		for k := range c.entries {
			delete(c.entries, k)
			n++
			if n >= c.max/2+1 {
				break
			}
		}
	}
	c.entries[conversationID] = memberEntry{members: ms, version: max(atLeast, entry.version)}
	return ms, nil
}

func (c *memberCache) invalidate(conversationID string) {
	c.mu.Lock()
	delete(c.entries, conversationID)
	c.gen++
	c.mu.Unlock()
}
