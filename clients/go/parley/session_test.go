package parley

import (
	"context"
	"runtime"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
)

func TestSessionDeduplicatesAcrossReconnects(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	c, _ := f.client(t)
	s := c.Connect(t.Context(), WithBackoff(time.Millisecond, time.Millisecond), WithAckInterval(time.Hour), WithAckBatch(3))
	defer s.Close()

	conn := f.nextConn(t)
	require.False(t, nextOf[*ConnectedEvent](t, s).Reconnect)
	conn.send(msgFrame("a", 1), msgFrame("a", 2), msgFrame("b", 1), syncFrame())
	require.Equal(t, []string{"a/1", "a/2", "b/1"}, messages(t, s, 3))
	nextOf[*SyncedEvent](t, s)

	// Three handed messages fill the batch: one ack per conversation.
	acks := map[string]uint64{}
	for len(acks) < 2 {
		ack := conn.next(t).GetAck()
		require.NotNil(t, ack)
		acks[ack.GetConversationId()] = ack.GetSeq()
	}
	require.Equal(t, map[string]uint64{"a": 2, "b": 1}, acks)

	conn.drop()
	disc := nextOf[*DisconnectedEvent](t, s)
	require.False(t, disc.Final)
	require.Equal(t, connect.CodeUnavailable, connect.CodeOf(disc.Err))

	conn = f.nextConn(t)
	require.True(t, nextOf[*ConnectedEvent](t, s).Reconnect)
	// The server redelivers what it delivered before: only new seqs surface.
	conn.send(msgFrame("a", 1), msgFrame("a", 2), msgFrame("a", 3), msgFrame("b", 1), msgFrame("b", 2), syncFrame())
	require.Equal(t, []string{"a/3", "b/2"}, messages(t, s, 2))
	_, isSynced := nextEvent(t, s).(*SyncedEvent)
	require.True(t, isSynced, "no duplicate surfaced before SyncComplete")
}

func TestSessionGapMovesTheMark(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	c, _ := f.client(t)
	s := c.Connect(t.Context(), WithAckInterval(time.Hour), WithAckBatch(2))
	defer s.Close()

	conn := f.nextConn(t)
	conn.send(
		&parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Gap{Gap: &parleyv1.Gap{ConversationId: "a", FromSeq: 0, ToSeq: 100}}},
		msgFrame("a", 50), // inside the gap: a repeat
		msgFrame("a", 101),
	)
	gap := nextOf[*GapEvent](t, s)
	require.Equal(t, GapEvent{ConversationID: "a", FromSeq: 0, ToSeq: 100}, *gap)
	require.Equal(t, []string{"a/101"}, messages(t, s, 1))
	ack := conn.next(t).GetAck()
	require.Equal(t, uint64(101), ack.GetSeq())
}

func TestSessionEpochChangeResetsDedup(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	c, _ := f.client(t)
	s := c.Connect(t.Context(), WithBackoff(time.Millisecond, time.Millisecond))
	defer s.Close()

	conn := f.nextConn(t)
	conn.send(msgFrame("a", 1), msgFrame("a", 2))
	require.Equal(t, []string{"a/1", "a/2"}, messages(t, s, 2))
	require.Equal(t, "epoch-1", s.Epoch())

	f.setEpoch("epoch-2")
	conn.drop()
	conn = f.nextConn(t)
	changed := nextOf[*EpochChangedEvent](t, s)
	require.Equal(t, EpochChangedEvent{Old: "epoch-1", New: "epoch-2"}, *changed)
	conn.send(msgFrame("a", 1))
	require.Equal(t, []string{"a/1"}, messages(t, s, 1), "seq 1 of the new history is new")
	require.Equal(t, "epoch-2", s.Epoch())
}

func TestSessionSeededEpoch(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	c, _ := f.client(t)
	s := c.Connect(t.Context(), WithEpoch("from-last-run"))
	defer s.Close()
	f.nextConn(t)
	changed := nextOf[*EpochChangedEvent](t, s)
	require.Equal(t, EpochChangedEvent{Old: "from-last-run", New: "epoch-1"}, *changed)
}

func TestSessionSendRetriesSameIDAfterReconnect(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	c, _ := f.client(t)
	s := c.Connect(t.Context(), WithBackoff(time.Millisecond, time.Millisecond))
	defer s.Close()

	conn := f.nextConn(t)
	type result struct {
		msg *parleyv1.Message
		err error
	}
	done := make(chan result, 1)
	go func() {
		msg, err := s.Send(t.Context(), "a", Text("hello"))
		done <- result{msg, err}
	}()
	first := conn.next(t).GetSend()
	require.NotNil(t, first)
	require.Equal(t, "a", first.GetConversationId())
	require.Equal(t, "hello", first.GetContent().GetText())
	require.Len(t, first.GetClientMsgId(), 36, "a UUID")

	conn.drop() // the stream breaks before the ack
	conn = f.nextConn(t)
	again := conn.next(t).GetSend()
	require.NotNil(t, again)
	require.Equal(t, first.GetClientMsgId(), again.GetClientMsgId())

	committed := &parleyv1.Message{ConversationId: "a", Seq: 7, ClientMsgId: first.GetClientMsgId()}
	conn.send(&parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_SendAck{SendAck: &parleyv1.SendAck{
		ClientMsgId: first.GetClientMsgId(), Message: committed, Duplicate: true,
	}}})
	select {
	case r := <-done:
		require.NoError(t, r.err)
		require.Equal(t, uint64(7), r.msg.GetSeq())
	case <-time.After(waitTimeout):
		t.Fatal("send not answered")
	}
}

func TestSessionSendWithIDAndErrors(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	c, _ := f.client(t)
	s := c.Connect(t.Context())
	defer s.Close()
	conn := f.nextConn(t)

	tests := []struct {
		name     string
		answer   func(id string) *parleyv1.ServerFrame
		wantCode connect.Code
		wantDup  bool
	}{
		{
			name: "duplicate",
			answer: func(id string) *parleyv1.ServerFrame {
				return &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_SendAck{SendAck: &parleyv1.SendAck{ClientMsgId: id, Message: &parleyv1.Message{Seq: 3}, Duplicate: true}}}
			},
			wantDup: true,
		},
		{
			name: "invalid_argument",
			answer: func(id string) *parleyv1.ServerFrame {
				return &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Error{Error: &parleyv1.Error{ClientMsgId: id, Code: "invalid_argument", Message: "text too long"}}}
			},
			wantCode: connect.CodeInvalidArgument,
		},
		{
			name: "unknown_code",
			answer: func(id string) *parleyv1.ServerFrame {
				return &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Error{Error: &parleyv1.Error{ClientMsgId: id, Code: "no_such_code"}}}
			},
			wantCode: connect.CodeUnknown,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "id-" + tt.name
			type result struct {
				ack *parleyv1.SendAck
				err error
			}
			done := make(chan result, 1)
			go func() {
				ack, err := s.SendWithID(t.Context(), "a", id, Text("x"))
				done <- result{ack, err}
			}()
			require.Equal(t, id, conn.next(t).GetSend().GetClientMsgId())
			conn.send(tt.answer(id))
			r := <-done
			if tt.wantCode != 0 {
				require.Error(t, r.err)
				require.Equal(t, tt.wantCode, connect.CodeOf(r.err))
				return
			}
			require.NoError(t, r.err)
			require.Equal(t, tt.wantDup, r.ack.GetDuplicate())
		})
	}

	t.Run("unencodable_content", func(t *testing.T) {
		_, err := s.SendWithID(t.Context(), "a", "bad-utf8", Text("ok\xff"))
		require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err))
		// The stream is unharmed: the next send goes out on it.
		done := make(chan error, 1)
		go func() {
			_, err := s.SendWithID(t.Context(), "a", "after-bad", Text("x"))
			done <- err
		}()
		require.Equal(t, "after-bad", conn.next(t).GetSend().GetClientMsgId())
		conn.send(&parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_SendAck{SendAck: &parleyv1.SendAck{ClientMsgId: "after-bad"}}})
		require.NoError(t, <-done)
	})

	t.Run("context_cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			_, err := s.SendWithID(ctx, "a", "never-acked", Text("x"))
			done <- err
		}()
		require.Equal(t, "never-acked", conn.next(t).GetSend().GetClientMsgId())
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
	})
}

func TestSessionResync(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	c, _ := f.client(t)
	s := c.Connect(t.Context(), WithBackoff(time.Millisecond, time.Millisecond))
	defer s.Close()

	conn := f.nextConn(t)
	nextOf[*ConnectedEvent](t, s)
	conn.send(&parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Resync{Resync: &parleyv1.Resync{Reason: "slow consumer"}}})
	disc := nextOf[*DisconnectedEvent](t, s)
	var resync *ResyncError
	require.ErrorAs(t, disc.Err, &resync)
	require.Equal(t, "slow consumer", resync.Reason)
	f.nextConn(t)
	require.True(t, nextOf[*ConnectedEvent](t, s).Reconnect)
}

func TestSessionRefreshesExpiredToken(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	f.setValidToken("rotated-elsewhere") // the client's access-0 is "expired"
	var saved []Credentials
	c, _ := f.client(t, WithCredentialsHook(func(creds Credentials) { saved = append(saved, creds) }))
	s := c.Connect(t.Context(), WithBackoff(time.Millisecond, time.Millisecond))
	defer s.Close()

	conn := f.nextConn(t)
	require.Equal(t, "Bearer "+accessTokenOf(1), conn.auth)
	nextOf[*ConnectedEvent](t, s)
	require.Equal(t, 1, f.refreshCount())
	require.Len(t, saved, 1)
	require.Equal(t, refreshTokenOf(1), saved[0].RefreshToken)
	require.Equal(t, refreshTokenOf(1), c.Credentials().RefreshToken)
}

func TestSessionEndsWhenRevoked(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	f.setValidToken("rotated-elsewhere")
	c, _ := f.client(t)
	// Spend generation 0's refresh token behind the client's back: its own
	// refresh is then a reuse, which revokes the session.
	_, err := f.Refresh(t.Context(), &parleyv1.RefreshRequest{RefreshToken: refreshTokenOf(0)})
	require.NoError(t, err)

	s := c.Connect(t.Context())
	defer s.Close()
	disc := nextOf[*DisconnectedEvent](t, s)
	require.True(t, disc.Final)
	require.ErrorIs(t, disc.Err, ErrRevoked)
	require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(disc.Err))
	_, open := <-s.Events()
	require.False(t, open, "events close after the final event")
	<-s.Done()
	require.ErrorIs(t, s.Err(), ErrRevoked)
	_, err = s.Send(t.Context(), "a", Text("x"))
	require.ErrorIs(t, err, ErrRevoked)
}

func TestSessionCloseFlushesAcks(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	c, _ := f.client(t)
	s := c.Connect(t.Context(), WithAckInterval(time.Hour), WithAckBatch(1000))
	conn := f.nextConn(t)
	conn.send(msgFrame("a", 1), msgFrame("a", 2), msgFrame("b", 9))
	require.Equal(t, []string{"a/1", "a/2", "b/9"}, messages(t, s, 3))
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is idempotent")

	acks := map[string]uint64{}
	for len(acks) < 2 {
		ack := conn.next(t).GetAck()
		require.NotNil(t, ack)
		acks[ack.GetConversationId()] = ack.GetSeq()
	}
	require.Equal(t, map[string]uint64{"a": 2, "b": 9}, acks)
	_, err := s.Send(t.Context(), "a", Text("x"))
	require.ErrorIs(t, err, ErrClosed)
	require.NoError(t, s.Err())
}

func TestSessionPendingSendFailsOnClose(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	c, _ := f.client(t)
	s := c.Connect(t.Context())
	conn := f.nextConn(t)
	done := make(chan error, 1)
	go func() {
		_, err := s.Send(context.Background(), "a", Text("x"))
		done <- err
	}()
	require.NotNil(t, conn.next(t).GetSend())
	require.NoError(t, s.Close())
	require.ErrorIs(t, <-done, ErrClosed)
}

func TestSessionContextCancelCloses(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	c, _ := f.client(t)
	ctx, cancel := context.WithCancel(t.Context())
	s := c.Connect(ctx)
	f.nextConn(t)
	cancel()
	select {
	case <-s.Done():
	case <-time.After(waitTimeout):
		t.Fatal("session did not stop")
	}
	require.NoError(t, s.Close())
}

func TestSessionHeartbeat(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	f.heartbeat = 20 * time.Millisecond // pings every 20ms; the timeout stays long
	c, _ := f.client(t)
	s := c.Connect(t.Context())
	defer s.Close()
	conn := f.nextConn(t)
	timeout := time.After(waitTimeout)
	for pings := 0; pings < 2; {
		select {
		case fr := <-conn.recv:
			if fr.GetPing() != nil {
				pings++
			}
		case <-timeout:
			t.Fatal("no pings")
		}
	}
}

func TestSessionDetectsSilentServer(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	f.heartbeat = 10 * time.Millisecond
	f.heartbeatTimeout = 50 * time.Millisecond
	f.silent = true // pings go unanswered: the server looks dead
	c, _ := f.client(t)
	s := c.Connect(t.Context(), WithBackoff(time.Millisecond, time.Millisecond))
	defer s.Close()
	f.nextConn(t)
	disc := nextOf[*DisconnectedEvent](t, s)
	require.ErrorIs(t, disc.Err, errHeartbeatTimeout)
	f.nextConn(t) // and it reconnects
}

// TestSessionNoGoroutineLeak checks that Close stops every goroutine the
// Session started, across reconnects.
func TestSessionNoGoroutineLeak(t *testing.T) {
	f := newFakeServer(t)
	c, hc := f.client(t)
	hc.CloseIdleConnections()
	baseline := runtime.NumGoroutine()

	s := c.Connect(t.Context(), WithBackoff(time.Millisecond, time.Millisecond))
	conn := f.nextConn(t)
	conn.send(msgFrame("a", 1))
	messages(t, s, 1)
	conn.drop()
	conn = f.nextConn(t)
	nextOf[*ConnectedEvent](t, s)
	done := make(chan error, 1)
	go func() {
		_, err := s.Send(context.Background(), "a", Text("x"))
		done <- err
	}()
	require.NotNil(t, conn.next(t).GetSend())
	require.NoError(t, s.Close())
	require.ErrorIs(t, <-done, ErrClosed)
	_, open := <-s.Events()
	require.False(t, open)

	ok := assertEventually(t, func() bool {
		hc.CloseIdleConnections()
		return runtime.NumGoroutine() <= baseline
	})
	if !ok {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d > %d\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
	}
}

func TestTokenRefreshIsSingleFlight(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	c, _ := f.client(t)
	stale := c.Credentials().AccessToken
	errs := make(chan error, 16)
	for range cap(errs) {
		go func() { errs <- c.tokens.refresh(t.Context(), stale) }()
	}
	for range cap(errs) {
		require.NoError(t, <-errs)
	}
	require.Equal(t, 1, f.refreshCount(), "one refresh for one stale token")
	require.NoError(t, c.Refresh(t.Context()))
	require.Equal(t, 2, f.refreshCount())
	require.Equal(t, refreshTokenOf(2), c.Credentials().RefreshToken)
}

func TestErrorOf(t *testing.T) {
	t.Parallel()
	err := errorOf(&parleyv1.Error{Code: "permission_denied", Message: "not a member"})
	var cerr *connect.Error
	require.ErrorAs(t, err, &cerr)
	require.Equal(t, connect.CodePermissionDenied, cerr.Code())
	require.Equal(t, "not a member", cerr.Message())
}

func assertEventually(t *testing.T, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// A new message's SendAck is the device's delivery of its own message, in
// stream order; a duplicate's SendAck is not a delivery.
func TestSessionSendAckIsOwnDelivery(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t)
	c, _ := f.client(t)
	s := c.Connect(t.Context(), WithAckInterval(time.Hour), WithAckBatch(1))
	defer s.Close()
	conn := f.nextConn(t)
	conn.send(syncFrame())
	nextOf[*SyncedEvent](t, s)

	ack := func(seq uint64, dup bool) *parleyv1.ServerFrame {
		return &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_SendAck{SendAck: &parleyv1.SendAck{
			ClientMsgId: "c" + itoa(int(seq)), Duplicate: dup,
			Message: &parleyv1.Message{ConversationId: "a", Seq: seq, ClientMsgId: "c" + itoa(int(seq)), Content: Text("mine")},
		}}}
	}
	// A duplicate ack of seq 5 arrives before seq 4: it must not move the
	// de-duplication mark past 4.
	conn.send(msgFrame("a", 1), ack(2, false), ack(5, true), msgFrame("a", 3), msgFrame("a", 4))
	require.Equal(t, []string{"a/1", "a/2", "a/3", "a/4"}, messages(t, s, 4))
	// Its own message is acknowledged like any other.
	var last uint64
	for last < 4 {
		last = conn.next(t).GetAck().GetSeq()
	}
	require.Equal(t, uint64(4), last)
}
