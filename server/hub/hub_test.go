package hub

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
)

func msgFrame(conv string, seq uint64) *parleyv1.ServerFrame {
	return &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Message{Message: &parleyv1.Message{ConversationId: conv, Seq: seq}}}
}

func drain(t *testing.T, c *Conn) []uint64 {
	t.Helper()
	var seqs []uint64
	for {
		f, ok := c.queue.Pop()
		if !ok {
			return seqs
		}
		seqs = append(seqs, f.GetMessage().GetSeq())
	}
}

func TestHub(t *testing.T) {
	t.Parallel()
	t.Run("register_replaces_same_device", func(t *testing.T) {
		t.Parallel()
		h := New(DefaultConfig())
		old, first := h.Register("u1", "d1")
		require.True(t, first)
		c, first := h.Register("u1", "d1")
		require.False(t, first)
		<-old.Done()
		require.ErrorIs(t, old.Err(), ErrReplaced)
		require.Equal(t, 1, h.Count())
		require.False(t, h.Unregister(old), "a replaced conn must not unregister its successor")
		require.True(t, h.Online("u1"))
		require.True(t, h.Unregister(c))
		require.False(t, h.Online("u1"))
		require.Equal(t, 0, h.Count())
	})
	t.Run("slow_consumer_is_closed_not_blocking", func(t *testing.T) {
		t.Parallel()
		h := New(Config{QueueLen: 2, MaxPending: 2})
		c, _ := h.Register("u1", "d1")
		require.True(t, c.Release(t.Context()))
		require.Equal(t, 1, h.DeliverToUser("u1", "", msgFrame("c", 1)))
		require.Equal(t, 1, h.DeliverToUser("u1", "", msgFrame("c", 2)))
		require.Equal(t, 0, h.DeliverToUser("u1", "", msgFrame("c", 3)))
		<-c.Done()
		require.ErrorIs(t, c.Err(), ErrSlowConsumer)
	})
	t.Run("pending_overflow_while_syncing_closes", func(t *testing.T) {
		t.Parallel()
		h := New(Config{QueueLen: 8, MaxPending: 1})
		c, _ := h.Register("u1", "d1")
		require.True(t, c.Deliver(msgFrame("c", 1)))
		require.False(t, c.Deliver(msgFrame("c", 2)))
		require.ErrorIs(t, c.Err(), ErrSlowConsumer)
	})
	t.Run("end_sync_keeps_order_and_drops_backlog_duplicates", func(t *testing.T) {
		t.Parallel()
		h := New(Config{QueueLen: 16, MaxPending: 16})
		c, _ := h.Register("u1", "d1")
		// Live traffic arrives while the backlog streams: seq 3 is in both.
		require.True(t, c.Deliver(msgFrame("c", 3)))
		require.True(t, c.Deliver(msgFrame("c", 4)))
		ctx := context.Background()
		require.True(t, c.Push(ctx, msgFrame("c", 2)))
		require.True(t, c.Push(ctx, msgFrame("c", 3)))
		require.True(t, c.Release(ctx))
		require.True(t, c.Deliver(msgFrame("c", 5)))
		require.Equal(t, []uint64{2, 3, 4, 5}, drain(t, c))
	})
	t.Run("deliver_skips_excepted_device", func(t *testing.T) {
		t.Parallel()
		h := New(DefaultConfig())
		a, _ := h.Register("u1", "d1")
		b, _ := h.Register("u1", "d2")
		a.Release(t.Context())
		b.Release(t.Context())
		require.Equal(t, 1, h.DeliverToUser("u1", "d1", msgFrame("c", 1)))
		require.Empty(t, drain(t, a))
		require.Equal(t, []uint64{1}, drain(t, b))
	})
	t.Run("close_device_any_user_and_close_all", func(t *testing.T) {
		t.Parallel()
		h := New(DefaultConfig())
		a, _ := h.Register("u1", "d1")
		b, _ := h.Register("u2", "d2")
		h.CloseDeviceAnyUser("d1", ErrRevoked)
		<-a.Done()
		require.ErrorIs(t, a.Err(), ErrRevoked)
		h.CloseAll(ErrShutdown)
		<-b.Done()
		require.ErrorIs(t, b.Err(), ErrShutdown)
		a.Close(ErrShutdown) // second close keeps the first reason
		require.ErrorIs(t, a.Err(), ErrRevoked)
	})
}

func BenchmarkDeliverToUser(b *testing.B) {
	h := New(Config{QueueLen: 1 << 20, MaxPending: 1})
	c, _ := h.Register("u1", "d1")
	c.Release(context.Background())
	b.ReportAllocs()
	seq := uint64(0)
	for b.Loop() {
		seq++
		if h.DeliverToUser("u1", "", msgFrame("c", seq)) != 1 {
			b.Fatal("not delivered")
		}
		c.queue.Pop()
	}
}

func TestDrainMarkerFollowsHeldBackFrames(t *testing.T) {
	t.Parallel()
	h := New(DefaultConfig())
	c, _ := h.Register("u1", "d1")
	require.True(t, c.Deliver(msgFrame("c", 1)))
	require.True(t, c.PushDrainMarker(t.Context()))
	require.True(t, c.Push(t.Context(), msgFrame("c", 0)))
	require.True(t, c.Release(t.Context()))
	var got []*parleyv1.ServerFrame
	for range 3 {
		f, ok := c.Next(t.Context())
		require.True(t, ok)
		got = append(got, f)
	}
	require.Equal(t, uint64(0), got[0].GetMessage().GetSeq(), "backlog first")
	require.Equal(t, uint64(1), got[1].GetMessage().GetSeq(), "then what was held back")
	require.Nil(t, got[2], "then the marker")
}

func TestLiveMessagesStayInOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	live := func(t *testing.T) *Conn {
		c, _ := New(DefaultConfig()).Register("u1", "d1")
		c.SetLast("c", 2)
		require.True(t, c.Release(ctx))
		return c
	}
	t.Run("a_skipped_message_holds_everything_until_repaired", func(t *testing.T) {
		t.Parallel()
		c := live(t)
		require.True(t, c.Deliver(msgFrame("c", 4)))
		<-c.Repairs()
		require.True(t, c.Deliver(msgFrame("c", 5)))
		require.True(t, c.Deliver(msgFrame("other", 1)), "other conversations wait too: one stream, one order")
		require.Empty(t, drain(t, c))

		gap, ok, recheck := c.TakeRepair()
		require.True(t, ok)
		require.False(t, recheck)
		require.Equal(t, Gap{ConversationID: "c", Before: 4}, gap)
		require.True(t, c.Push(ctx, msgFrame("c", 3)))
		require.True(t, c.Release(ctx))
		require.Equal(t, []uint64{3, 4, 5, 1}, drain(t, c))

		require.True(t, c.Deliver(msgFrame("c", 3)), "a late copy is dropped, not an error")
		require.True(t, c.Deliver(msgFrame("c", 6)))
		require.Equal(t, []uint64{6}, drain(t, c))
	})
	t.Run("a_second_gap_among_held_frames_stops_the_release", func(t *testing.T) {
		t.Parallel()
		c := live(t)
		require.True(t, c.Deliver(msgFrame("c", 4)))
		require.True(t, c.Deliver(msgFrame("c", 7)))
		_, _, _ = c.TakeRepair()
		require.True(t, c.Push(ctx, msgFrame("c", 3)))
		require.True(t, c.Release(ctx))
		require.Equal(t, []uint64{3, 4}, drain(t, c))
		<-c.Repairs()
		gap, ok, _ := c.TakeRepair()
		require.True(t, ok)
		require.Equal(t, uint64(7), gap.Before)
		require.True(t, c.Push(ctx, msgFrame("c", 5)))
		require.True(t, c.Push(ctx, msgFrame("c", 6)))
		require.True(t, c.Release(ctx))
		require.Equal(t, []uint64{5, 6, 7}, drain(t, c))
	})
	t.Run("a_new_conversation_starts_at_seq_1_or_asks_for_repair", func(t *testing.T) {
		t.Parallel()
		c := live(t)
		require.True(t, c.Deliver(msgFrame("fresh", 1)))
		require.Equal(t, []uint64{1}, drain(t, c))
		// Joined a group with history: its position is unknown.
		require.True(t, c.Deliver(msgFrame("group", 40)))
		require.Empty(t, drain(t, c))
		gap, ok, _ := c.TakeRepair()
		require.True(t, ok)
		require.Equal(t, Gap{ConversationID: "group", Before: 40}, gap)
		_, known := c.Last("group")
		require.False(t, known)
	})
	t.Run("a_new_messages_send_ack_is_ordered_a_duplicates_is_not", func(t *testing.T) {
		t.Parallel()
		c := live(t)
		ack := func(seq uint64, dup bool) *parleyv1.ServerFrame {
			return &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_SendAck{SendAck: &parleyv1.SendAck{
				Message: &parleyv1.Message{ConversationId: "c", Seq: seq}, Duplicate: dup,
			}}}
		}
		require.True(t, c.Deliver(ack(1, true)))
		require.True(t, c.Deliver(ack(4, false)))
		f, ok := c.queue.Pop()
		require.True(t, ok)
		require.True(t, f.GetSendAck().GetDuplicate())
		_, ok = c.queue.Pop()
		require.False(t, ok, "the SendAck of seq 4 waits for seq 3")
	})
	t.Run("a_send_ack_the_backlog_overtook_still_answers_the_send", func(t *testing.T) {
		t.Parallel()
		c, _ := New(DefaultConfig()).Register("u1", "d1")
		// Committed before the backlog was read, acknowledged after.
		require.True(t, c.Deliver(&parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_SendAck{SendAck: &parleyv1.SendAck{
			ClientMsgId: "x", Message: &parleyv1.Message{ConversationId: "c", Seq: 1},
		}}}))
		require.True(t, c.Push(ctx, msgFrame("c", 1)))
		require.True(t, c.Release(ctx))
		_, _ = c.queue.Pop()
		f, ok := c.queue.Pop()
		require.True(t, ok)
		require.Equal(t, "x", f.GetSendAck().GetClientMsgId())
	})
	t.Run("recheck_holds_live_frames", func(t *testing.T) {
		t.Parallel()
		c := live(t)
		c.Recheck()
		<-c.Repairs()
		require.True(t, c.Deliver(msgFrame("c", 3)))
		require.Empty(t, drain(t, c))
		_, ok, recheck := c.TakeRepair()
		require.False(t, ok)
		require.True(t, recheck)
		require.True(t, c.Release(ctx))
		require.Equal(t, []uint64{3}, drain(t, c))
	})
}

// A backlog fills at most half the queue, so live frames arriving right
// after catch-up do not find it full and drop the device as slow.
func TestBacklogLeavesRoomForLiveFrames(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _ := New(Config{QueueLen: 4, MaxPending: 4}).Register("u1", "d1")
	require.True(t, c.Push(ctx, msgFrame("c", 1)))
	require.True(t, c.Push(ctx, msgFrame("c", 2)))
	full, cancel := context.WithCancel(ctx)
	cancel()
	require.False(t, c.Push(full, msgFrame("c", 3)), "the backlog waits once it has half the queue")
	c.SetLast("c", 2)
	require.True(t, c.Release(ctx))
	require.True(t, c.Deliver(msgFrame("c", 3)))
	require.True(t, c.Deliver(msgFrame("c", 4)))
	require.Equal(t, []uint64{1, 2, 3, 4}, drain(t, c))
	select {
	case <-c.Done():
		t.Fatalf("closed: %v", c.Err())
	default:
	}
}
