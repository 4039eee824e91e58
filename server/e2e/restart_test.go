package e2e_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/parley"
)

// TestSendSurvivesServerCrash: the server is SIGKILLed and restarted on the
// same data directory. Sessions reconnect on their own, sends in flight are
// retried with their client_msg_id and committed once, a retried id returns
// the original message, and nothing acknowledged before the crash is lost.
func TestSendSurvivesServerCrash(t *testing.T) {
	t.Parallel()
	p := startParleyd(t)
	fw := newForwarder(t, p.Addr())
	alice := newUser(t, fw.URL(), "alice", 1)
	bob := newUser(t, fw.URL(), "bob", 2)
	dm := createDirect(t, alice, bob)
	sender := alice.dev(0)
	sender.connect(t)
	for _, d := range bob.devices {
		d.connect(t)
	}
	epoch := sender.session.Epoch()

	var acked []*parleyv1.Message
	for i := range 5 {
		m, err := sender.session.Send(t.Context(), dm, text(fmt.Sprint("before ", i)))
		require.NoError(t, err)
		acked = append(acked, m)
	}
	first, err := sender.session.SendWithID(t.Context(), dm, "retry-me", text("once"))
	require.NoError(t, err)
	require.False(t, first.GetDuplicate())
	acked = append(acked, first.GetMessage())

	// A burst in flight while the server dies: some are committed and
	// acknowledged, some committed but not acknowledged, some not committed.
	const burst = 20
	type result struct {
		id  string
		ack *parleyv1.SendAck
		err error
	}
	results := make(chan result, burst)
	var wg sync.WaitGroup
	for i := range burst {
		id := fmt.Sprintf("burst-%02d", i)
		wg.Go(func() {
			ack, err := sender.session.SendWithID(t.Context(), dm, id, text(id))
			results <- result{id, ack, err}
		})
	}
	p.Kill()
	fw.dropAll()
	waitEvent(t, sender.rec, "disconnect", func(*parley.DisconnectedEvent) bool { return true })

	// Sent while the server is down: queued in the Session until it is back.
	down := make(chan result, 1)
	wg.Go(func() {
		ack, err := sender.session.SendWithID(t.Context(), dm, "while-down", text("while down"))
		down <- result{"while-down", ack, err}
	})

	p.Restart(t)
	fw.setTarget(p.Addr())
	wg.Wait()
	close(results)
	for r := range results {
		require.NoError(t, r.err, r.id)
		require.Equal(t, r.id, r.ack.GetMessage().GetClientMsgId())
	}
	r := <-down
	require.NoError(t, r.err)
	require.False(t, r.ack.GetDuplicate(), "never committed before")

	t.Run("retried_id_returns_the_original", func(t *testing.T) {
		tests := []struct {
			name string
			id   string
			want *parleyv1.Message
		}{
			{name: "acked_before_the_crash", id: "retry-me", want: first.GetMessage()},
			{name: "sent_while_down", id: "while-down", want: r.ack.GetMessage()},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				again, err := sender.session.SendWithID(t.Context(), dm, tt.id, text("different text is ignored"))
				require.NoError(t, err)
				require.True(t, again.GetDuplicate())
				require.Equal(t, tt.want.GetId(), again.GetMessage().GetId())
				require.Equal(t, tt.want.GetSeq(), again.GetMessage().GetSeq())
			})
		}
		// The unary path shares the idempotency key.
		res, err := alice.client().Chat().SendMessage(t.Context(), &parleyv1.SendMessageRequest{
			ConversationId: dm, ClientMsgId: "retry-me", Content: text("x"),
		})
		require.NoError(t, err)
		require.True(t, res.GetDuplicate())
		require.Equal(t, first.GetMessage().GetId(), res.GetMessage().GetId())
	})

	t.Run("each_message_committed_once", func(t *testing.T) {
		h := history(t, alice.client(), dm)
		requireContiguous(t, h, h[0].GetSeq())
		ids := map[string]int{}
		for _, m := range h {
			if m.GetClientMsgId() != "" {
				ids[m.GetClientMsgId()]++
			}
		}
		for id, n := range ids {
			require.Equal(t, 1, n, "client_msg_id %s committed %d times", id, n)
		}
		for i := range burst {
			require.Contains(t, ids, fmt.Sprintf("burst-%02d", i))
		}
		require.Contains(t, ids, "while-down")
		byID := map[string]*parleyv1.Message{}
		for _, m := range h {
			byID[m.GetId()] = m
		}
		for _, m := range acked {
			require.Contains(t, byID, m.GetId(), "acked message %d lost", m.GetSeq())
			require.Equal(t, m.GetSeq(), byID[m.GetId()].GetSeq())
		}
	})

	t.Run("devices_get_everything_once_in_order", func(t *testing.T) {
		h := history(t, bob.client(), dm)
		last := h[len(h)-1].GetSeq()
		for _, d := range append([]*device{sender}, bob.devices...) {
			d.rec.waitSeq(t, dm, last)
			requireSameMessages(t, h, d.rec.messages(dm), "delivered to %s", d.name)
			_, changed := find(d.rec, func(*parley.EpochChangedEvent) bool { return true })
			require.False(t, changed, "a restart on the same data is the same epoch")
			_, reconnected := find(d.rec, func(e *parley.ConnectedEvent) bool { return e.Reconnect })
			require.True(t, reconnected)
		}
		require.Equal(t, epoch, sender.session.Epoch())
	})
}

// TestSendRetriedAfterNetworkDrop: connections cut (not the server) while
// sends are in flight; every send completes exactly once.
func TestSendRetriedAfterNetworkDrop(t *testing.T) {
	t.Parallel()
	p := startParleyd(t)
	fw := newForwarder(t, p.Addr())
	alice := newUser(t, fw.URL(), "alice", 1)
	bob := newUser(t, fw.URL(), "bob", 1)
	dm := createDirect(t, alice, bob)
	alice.dev(0).connect(t)
	bob.dev(0).connect(t)

	const n = 30
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := alice.dev(0).session.SendWithID(t.Context(), dm, fmt.Sprint("drop-", i), text("x"))
			errs <- err
		})
		if i%10 == 5 {
			fw.dropAll()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	h := history(t, alice.client(), dm)
	seen := map[string]bool{}
	for _, m := range h {
		require.False(t, seen[m.GetClientMsgId()], "duplicate %s", m.GetClientMsgId())
		seen[m.GetClientMsgId()] = true
	}
	require.Len(t, seen, n)
	bob.dev(0).rec.waitSeq(t, dm, h[len(h)-1].GetSeq())
	requireSameMessages(t, h, bob.dev(0).rec.messages(dm))
}
