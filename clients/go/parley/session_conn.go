package parley

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect/v2"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
)

const (
	defaultHeartbeatInterval = 15 * time.Second
)

var (
	errStreamEnded      = errors.New("parley: server ended the stream")
	errHandshakeTimeout = errors.New("parley: no welcome from the server")
	errNoWelcome        = errors.New("parley: first frame is not a welcome")
	errHeartbeatTimeout = errors.New("parley: server silent past the heartbeat timeout")
)

// conn is one open Connect stream. Its reader goroutine is the only caller of
// Receive and its writer goroutine the only caller of Send.
type conn struct {
	stream     parleyv1connect.ChatServiceConnectClientStream
	welcome    chan *parleyv1.Welcome // capacity 1; the reader hands over the first frame
	start      chan struct{}          // closed once the Welcome was processed
	drain      chan struct{}          // closed to make the writer flush acks and close its side
	readerErr  chan error             // capacity 1: the reader's result
	writerErr  chan error             // capacity 1: the writer's result
	readerDone chan struct{}
	writerDone chan struct{}
	lastRecv   atomic.Int64 // unix nanos of the latest frame
	blocked    atomic.Bool  // the reader waits for room in the event queue
}

type heartbeat struct {
	interval time.Duration
	timeout  time.Duration
}

// connectOnce opens one stream, runs it until it breaks or the Session closes,
// and tears it down. It resets *attempt once the server welcomed the stream.
func (s *Session) connectOnce(ctx context.Context, attempt *int) error {
	if s.isClosing() {
		return ErrClosed
	}
	creds, err := s.client.tokens.snapshot()
	if err != nil {
		return err
	}
	connCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := s.client.chat.Connect(connCtx)
	if err != nil {
		return s.afterFailure(ctx, creds.AccessToken, err)
	}
	// connecthttp does not open a bidi stream on the first Receive (only on
	// the first Send), and the server speaks first: open it explicitly.
	if err := stream.SendHeaders(); err != nil {
		_ = stream.Close()
		return s.afterFailure(ctx, creds.AccessToken, err)
	}
	c := &conn{
		stream:     stream,
		welcome:    make(chan *parleyv1.Welcome, 1),
		start:      make(chan struct{}),
		drain:      make(chan struct{}),
		readerErr:  make(chan error, 1),
		writerErr:  make(chan error, 1),
		readerDone: make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	c.lastRecv.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	teardown := func() {
		cancel()
		_ = stream.Close()
		wg.Wait()
	}
	wg.Go(func() {
		defer close(c.readerDone)
		c.readerErr <- s.read(connCtx, c)
	})

	handshake := time.NewTimer(s.cfg.handshakeTimeout)
	defer handshake.Stop()
	var welcome *parleyv1.Welcome
	select {
	case welcome = <-c.welcome:
	case err := <-c.readerErr:
		teardown()
		return s.afterFailure(ctx, creds.AccessToken, err)
	case <-handshake.C:
		teardown()
		return errHandshakeTimeout
	case <-s.closing:
		teardown()
		return ErrClosed
	}
	*attempt = 0
	if !s.welcome(welcome) {
		teardown()
		return ErrClosed
	}
	s.mu.Lock()
	s.connGen++
	gen := s.connGen
	s.mu.Unlock()
	close(c.start)
	hb := heartbeatOf(welcome)
	s.logger.InfoContext(ctx, "parley: connected", "user_id", welcome.GetUserId())
	wg.Go(func() {
		defer close(c.writerDone)
		c.writerErr <- s.write(connCtx, c, gen, hb)
	})

	select {
	case err = <-c.readerErr:
	case err = <-c.writerErr:
		if errors.Is(err, errHeartbeatTimeout) {
			break
		}
		// A failed Send means the server ended the stream; why (a Resync
		// frame, a status such as ResourceExhausted) is in what is left to
		// read, so let the reader get there. It returns soon unless the
		// application is not taking events, and then there is no point in
		// reconnecting yet anyway.
		grace := time.NewTimer(hb.timeout)
		select {
		case err = <-c.readerErr:
		case <-grace.C:
		case <-s.closing:
			grace.Stop()
			teardown()
			return ErrClosed
		}
		grace.Stop()
	case <-s.closing:
		s.drainConn(c)
		teardown()
		return ErrClosed
	}
	teardown()
	return s.afterFailure(ctx, creds.AccessToken, err)
}

// drainConn is the graceful end of a stream: once the application can receive
// nothing more, the writer flushes the final acks and closes its side, and the
// server gets a moment to read them and end the stream.
func (s *Session) drainConn(c *conn) {
	<-s.dispatcherDone
	close(c.drain)
	timeout := time.NewTimer(closeFlushTimeout)
	defer timeout.Stop()
	select {
	case <-c.writerDone:
	case <-timeout.C:
		return
	}
	select {
	case <-c.readerDone:
	case <-timeout.C:
	}
}

// afterFailure refreshes the access token when the stream failed because it
// expired (the next attempt then uses the new one) and reports err, or the
// refresh's error if the session turned out to be revoked.
func (s *Session) afterFailure(ctx context.Context, token string, err error) error {
	if !isAccessExpired(err) {
		return err
	}
	if rerr := s.client.tokens.refresh(ctx, token); rerr != nil {
		if errors.Is(rerr, ErrRevoked) {
			return rerr
		}
		// Not wrapping err: its Unauthenticated code would read as fatal.
		return fmt.Errorf("parley: refresh after an expired access token: %w", rerr)
	}
	// The token was the problem and is fixed: report a retryable error.
	return fmt.Errorf("parley: access token expired, refreshed: %w", errStreamEnded)
}

// welcome applies a Welcome: an epoch different from the one seen before
// resets de-duplication and pending acks. It reports false if the Session is
// closing.
func (s *Session) welcome(w *parleyv1.Welcome) bool {
	s.mu.Lock()
	old := s.epoch
	s.epoch = w.GetEpoch()
	reconnect := s.connected
	s.connected = true
	s.mu.Unlock()
	if old != "" && old != w.GetEpoch() {
		gen := s.gen.Add(1)
		s.dedup.reset()
		s.acker.reset(gen)
		s.logger.Warn("parley: server epoch changed", "user_id", w.GetUserId())
		if !s.push(queued{ev: &EpochChangedEvent{Old: old, New: w.GetEpoch()}}) {
			return false
		}
	}
	return s.push(queued{ev: &ConnectedEvent{Welcome: w, Reconnect: reconnect}})
}

// read is a stream's reader: it hands the Welcome to connectOnce, then turns
// frames into queued events and answers pending sends.
func (s *Session) read(ctx context.Context, c *conn) error {
	first := true
	for {
		res, err := c.stream.Receive()
		if errors.Is(err, io.EOF) {
			return errStreamEnded
		}
		if err != nil {
			return err
		}
		c.lastRecv.Store(time.Now().UnixNano())
		frame := res.GetFrame()
		if first {
			w := frame.GetWelcome()
			if w == nil {
				return errNoWelcome
			}
			c.welcome <- w
			select {
			case <-c.start:
			case <-ctx.Done():
				return ctx.Err()
			}
			first = false
			continue
		}
		if err := s.handleFrame(ctx, c, frame); err != nil {
			return err
		}
	}
}

func (s *Session) handleFrame(ctx context.Context, c *conn, frame *parleyv1.ServerFrame) error {
	switch k := frame.GetKind().(type) {
	case *parleyv1.ServerFrame_Message:
		m := k.Message
		return s.deliver(ctx, c, &MessageEvent{Message: m}, m.GetConversationId(), m.GetSeq())
	case *parleyv1.ServerFrame_Gap:
		g := k.Gap
		ev := &GapEvent{ConversationID: g.GetConversationId(), FromSeq: g.GetFromSeq(), ToSeq: g.GetToSeq()}
		return s.deliver(ctx, c, ev, g.GetConversationId(), g.GetToSeq())
	case *parleyv1.ServerFrame_SendAck:
		ack := k.SendAck
		s.resolve(ack.GetClientMsgId(), ack, nil)
		if ack.GetDuplicate() || ack.GetMessage() == nil {
			// A duplicate's ack arrives out of stream order; the original
			// comes (or came) through the stream.
			return nil
		}
		// A new message's ack is this device's delivery of it, in order.
		m := ack.GetMessage()
		return s.deliver(ctx, c, &MessageEvent{Message: m}, m.GetConversationId(), m.GetSeq())
	case *parleyv1.ServerFrame_Error:
		e := k.Error
		if e.GetClientMsgId() != "" && s.resolve(e.GetClientMsgId(), nil, errorOf(e)) {
			return nil
		}
		return s.pushFromReader(ctx, c, queued{ev: &ErrorEvent{Error: e}})
	case *parleyv1.ServerFrame_SyncComplete:
		return s.pushFromReader(ctx, c, queued{ev: &SyncedEvent{}})
	case *parleyv1.ServerFrame_Receipt:
		return s.pushFromReader(ctx, c, queued{ev: &ReceiptEvent{Receipt: k.Receipt}})
	case *parleyv1.ServerFrame_Typing:
		return s.pushFromReader(ctx, c, queued{ev: &TypingEvent{Typing: k.Typing}})
	case *parleyv1.ServerFrame_Presence:
		return s.pushFromReader(ctx, c, queued{ev: &PresenceEvent{Presence: k.Presence}})
	case *parleyv1.ServerFrame_Resync:
		return &ResyncError{Reason: k.Resync.GetReason()}
	}
	return nil // pong, a repeated welcome, or a frame kind newer than this SDK
}

// deliver queues a message or gap unless de-duplication drops it. The mark
// moves only once the item is queued, so an item lost with its stream is
// accepted when the server redelivers it.
func (s *Session) deliver(ctx context.Context, c *conn, ev Event, conversationID string, seq uint64) error {
	if !s.dedup.fresh(conversationID, seq) {
		return nil
	}
	if err := s.pushFromReader(ctx, c, queued{ev: ev, conv: conversationID, seq: seq}); err != nil {
		return err
	}
	s.dedup.admit(conversationID, seq)
	return nil
}

// pushFromReader queues an item stamped with the current epoch generation,
// waiting for room while the application is slow.
func (s *Session) pushFromReader(ctx context.Context, c *conn, it queued) error {
	it.gen = s.gen.Load()
	select {
	case s.queue <- it:
		return nil
	default:
	}
	c.blocked.Store(true)
	defer c.blocked.Store(false)
	select {
	case s.queue <- it:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return ErrClosed
	}
}

// write is a stream's writer: pending sends, coalesced acks and pings.
func (s *Session) write(ctx context.Context, c *conn, connGen uint64, hb heartbeat) error {
	send := func(f *parleyv1.ClientFrame) error {
		return c.stream.Send(&parleyv1.ConnectRequest{Frame: f})
	}
	sendPending := func() error {
		for _, f := range s.unsent(connGen) {
			if err := send(f); err != nil {
				return err
			}
		}
		return nil
	}
	if err := sendPending(); err != nil {
		return err
	}
	ping := time.NewTicker(hb.interval)
	defer ping.Stop()
	acks := time.NewTicker(s.cfg.ackInterval)
	defer acks.Stop()
	var nonce uint64
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.drain:
			if err := s.flushAcks(send); err != nil {
				return err
			}
			return c.stream.CloseSend()
		case <-s.kick:
			if err := sendPending(); err != nil {
				return err
			}
		case <-s.acker.flush:
			if err := s.flushAcks(send); err != nil {
				return err
			}
		case <-acks.C:
			if err := s.flushAcks(send); err != nil {
				return err
			}
		case <-ping.C:
			silent := time.Since(time.Unix(0, c.lastRecv.Load()))
			if !c.blocked.Load() && silent > hb.timeout {
				return errHeartbeatTimeout
			}
			nonce++
			if err := send(&parleyv1.ClientFrame{Kind: &parleyv1.ClientFrame_Ping{Ping: &parleyv1.PingFrame{Nonce: nonce}}}); err != nil {
				return err
			}
		}
	}
}

// flushAcks sends the coalesced acks; on failure they are kept for the next
// stream.
func (s *Session) flushAcks(send func(*parleyv1.ClientFrame) error) error {
	gen := s.acker.generation()
	acks := s.acker.take()
	for conv, seq := range acks {
		err := send(&parleyv1.ClientFrame{Kind: &parleyv1.ClientFrame_Ack{Ack: &parleyv1.AckFrame{ConversationId: conv, Seq: seq}}})
		if err != nil {
			s.acker.restore(gen, acks)
			return err
		}
	}
	return nil
}

func heartbeatOf(w *parleyv1.Welcome) heartbeat {
	hb := heartbeat{interval: w.GetHeartbeatInterval().AsDuration(), timeout: w.GetHeartbeatTimeout().AsDuration()}
	if hb.interval <= 0 {
		hb.interval = defaultHeartbeatInterval
	}
	if hb.timeout <= hb.interval {
		hb.timeout = 3 * hb.interval
	}
	return hb
}

// errorOf turns an Error frame into a *connect.Error with the frame's code.
func errorOf(e *parleyv1.Error) error {
	var code connect.Code
	if err := code.UnmarshalText([]byte(e.GetCode())); err != nil {
		code = connect.CodeUnknown
	}
	return connect.NewError(code, e.GetMessage()).WithRemote()
}
