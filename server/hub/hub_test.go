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
		f, ok := c.queue.pop()
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
		require.True(t, c.EndSync(t.Context()))
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
		require.True(t, c.EndSync(ctx))
		require.True(t, c.Deliver(msgFrame("c", 5)))
		require.Equal(t, []uint64{2, 3, 4, 5}, drain(t, c))
	})
	t.Run("deliver_skips_excepted_device", func(t *testing.T) {
		t.Parallel()
		h := New(DefaultConfig())
		a, _ := h.Register("u1", "d1")
		b, _ := h.Register("u1", "d2")
		a.EndSync(t.Context())
		b.EndSync(t.Context())
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
	c.EndSync(context.Background())
	f := msgFrame("c", 1)
	b.ReportAllocs()
	for b.Loop() {
		if h.DeliverToUser("u1", "", f) != 1 {
			b.Fatal("not delivered")
		}
		c.queue.pop()
	}
}

func TestDrainMarkerFollowsHeldBackFrames(t *testing.T) {
	t.Parallel()
	h := New(DefaultConfig())
	c, _ := h.Register("u1", "d1")
	require.True(t, c.Deliver(msgFrame("c", 1)))
	require.True(t, c.PushDrainMarker(t.Context()))
	require.True(t, c.Push(t.Context(), msgFrame("c", 0)))
	require.True(t, c.EndSync(t.Context()))
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
