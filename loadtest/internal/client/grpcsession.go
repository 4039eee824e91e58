package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
)

const (
	grpcAckBatch         = 64
	grpcHandshakeTimeout = 10 * time.Second
	grpcCloseTimeout     = 2 * time.Second
	grpcBackoffBase      = 100 * time.Millisecond
	grpcBackoffMax       = 5 * time.Second
)

// grpcSession is what the SDK's Session does, over a native gRPC stream and
// kept to what the load generator needs: one stream at a time, reopened
// with backoff when it breaks; pending sends resent with their
// client_msg_id on every new stream until answered; de-duplication by
// (conversation, seq); acks coalesced per conversation; pings at the
// server's heartbeat interval.
//
// The stream's reader goroutine handles frames and calls the Handler;
// sends come from the callers of Send and from the keepalive goroutine
// (acks, pings), serialised by the stream's send lock.
type grpcSession struct {
	dev     *grpcDevice
	h       Handler
	cancel  context.CancelFunc // ends every stream
	closing chan struct{}
	done    chan struct{} // closed when run returns
	once    sync.Once

	// dedup is the reader's: conversation → highest seq handed over.
	dedup map[string]uint64

	mu      sync.Mutex // guards the fields below
	stream  *grpcStream
	pending map[string]*grpcPending
	order   uint64
	ended   bool

	ackMu    sync.Mutex
	acks     map[string]uint64
	ackCount int
	ackKick  chan struct{} // capacity 1
}

type grpcStream struct {
	cs     grpc.ClientStream
	sendMu sync.Mutex
}

func (st *grpcStream) send(f *parleyv1.ClientFrame) error {
	st.sendMu.Lock()
	defer st.sendMu.Unlock()
	return st.cs.SendMsg(&parleyv1.ConnectRequest{Frame: f})
}

type grpcPending struct {
	conv  string
	frame *parleyv1.ClientFrame
	order uint64
	done  chan struct{}
	ack   *parleyv1.SendAck
	err   error
}

func startGRPCSession(ctx context.Context, d *grpcDevice, h Handler) *grpcSession {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &grpcSession{
		dev:     d,
		h:       h,
		cancel:  cancel,
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		dedup:   map[string]uint64{},
		pending: map[string]*grpcPending{},
		acks:    map[string]uint64{},
		ackKick: make(chan struct{}, 1),
	}
	stop := context.AfterFunc(ctx, s.beginClose)
	go func() {
		defer stop()
		s.run(runCtx)
	}()
	return s
}

func (s *grpcSession) beginClose() { s.once.Do(func() { close(s.closing) }) }

func (s *grpcSession) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// run opens streams until the session closes or the server refuses the
// device for good.
func (s *grpcSession) run(ctx context.Context) {
	defer close(s.done)
	defer s.fail(ErrClosed)
	attempt := 0
	for {
		err := s.streamOnce(ctx, &attempt)
		if s.isClosing() {
			return
		}
		if status.Code(err) == codes.Unauthenticated {
			s.dev.cfg.Logger.Warn("grpc session ended: unauthenticated", "user_id", s.dev.UserID(), "err", err)
			if s.h.Disconnected != nil {
				s.h.Disconnected(err)
			}
			s.fail(err)
			return
		}
		if s.h.Disconnected != nil {
			s.h.Disconnected(err)
		}
		// Full jitter over an exponential bound.
		bound := min(grpcBackoffMax, grpcBackoffBase<<min(attempt, 10))
		attempt++
		timer := time.NewTimer(rand.N(bound))
		select {
		case <-timer.C:
		case <-s.closing:
			timer.Stop()
			return
		}
	}
}

// streamOnce runs one stream until it breaks or the session closes.
func (s *grpcSession) streamOnce(ctx context.Context, attempt *int) error {
	cs, cancel, err := s.dev.openStream(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	// Bound the wait for the Welcome.
	handshake := time.AfterFunc(grpcHandshakeTimeout, cancel)
	var first parleyv1.ConnectResponse
	err = cs.RecvMsg(&first)
	handshake.Stop()
	if err != nil {
		return err
	}
	welcome := first.GetFrame().GetWelcome()
	if welcome == nil {
		return errors.New("client: first frame is not a welcome")
	}
	*attempt = 0
	st := &grpcStream{cs: cs}
	s.mu.Lock()
	s.stream = st
	frames := s.unsentLocked()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.stream == st {
			s.stream = nil
		}
		s.mu.Unlock()
	}()
	for _, f := range frames {
		if err := st.send(f); err != nil {
			break // the reader sees why
		}
	}
	kctx, kcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.keepalive(kctx, st, heartbeatOf(welcome)) })
	defer func() {
		kcancel()
		wg.Wait()
	}()
	for {
		var res parleyv1.ConnectResponse
		if err := cs.RecvMsg(&res); err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("client: server ended the stream")
			}
			return err
		}
		if err := s.handle(st, res.GetFrame()); err != nil {
			return err
		}
	}
}

// unsentLocked returns every pending frame in the order first sent.
func (s *grpcSession) unsentLocked() []*parleyv1.ClientFrame {
	ps := make([]*grpcPending, 0, len(s.pending))
	for _, p := range s.pending {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b *grpcPending) int { return cmp.Compare(a.order, b.order) })
	frames := make([]*parleyv1.ClientFrame, len(ps))
	for i, p := range ps {
		frames[i] = p.frame
	}
	return frames
}

func (s *grpcSession) handle(st *grpcStream, f *parleyv1.ServerFrame) error {
	switch k := f.GetKind().(type) {
	case *parleyv1.ServerFrame_Message:
		s.deliver(k.Message)
	case *parleyv1.ServerFrame_SendAck:
		ack := k.SendAck
		s.resolve(ack.GetClientMsgId(), ack, nil)
		// A new message's SendAck is this device's delivery of it; a
		// duplicate's is not.
		if !ack.GetDuplicate() && ack.GetMessage() != nil {
			s.deliver(ack.GetMessage())
		}
	case *parleyv1.ServerFrame_Error:
		e := k.Error
		if e.GetClientMsgId() != "" {
			var code connect.Code
			if err := code.UnmarshalText([]byte(e.GetCode())); err != nil {
				code = connect.CodeUnknown
			}
			s.resolve(e.GetClientMsgId(), nil, connect.NewError(code, e.GetMessage()))
		}
	case *parleyv1.ServerFrame_Gap:
		g := k.Gap
		if g.GetToSeq() > s.dedup[g.GetConversationId()] {
			if s.h.Gap != nil {
				s.h.Gap(g.GetConversationId(), g.GetFromSeq(), g.GetToSeq())
			}
			s.dedup[g.GetConversationId()] = g.GetToSeq()
			s.ack(g.GetConversationId(), g.GetToSeq())
		}
	case *parleyv1.ServerFrame_SyncComplete:
		if s.h.Synced != nil {
			s.h.Synced()
		}
	case *parleyv1.ServerFrame_Resync:
		return fmt.Errorf("client: server asked to resync: %s", k.Resync.GetReason())
	}
	return nil
}

func (s *grpcSession) deliver(m *parleyv1.Message) {
	conv, seq := m.GetConversationId(), m.GetSeq()
	if seq <= s.dedup[conv] {
		if s.h.Repeat != nil {
			s.h.Repeat(conv, seq)
		}
		return
	}
	s.dedup[conv] = seq
	if s.h.Message != nil {
		s.h.Message(m)
	}
	s.ack(conv, seq)
}

// ack records a handed-over seq for the next ack flush.
func (s *grpcSession) ack(conv string, seq uint64) {
	s.ackMu.Lock()
	s.acks[conv] = max(s.acks[conv], seq)
	s.ackCount++
	kick := s.ackCount >= grpcAckBatch
	if kick {
		s.ackCount = 0
	}
	s.ackMu.Unlock()
	if kick {
		select {
		case s.ackKick <- struct{}{}:
		default:
		}
	}
}

// flushAcks sends the coalesced acks; what cannot be sent is kept.
func (s *grpcSession) flushAcks(st *grpcStream) error {
	s.ackMu.Lock()
	acks := s.acks
	s.acks = map[string]uint64{}
	s.ackCount = 0
	s.ackMu.Unlock()
	for conv, seq := range acks {
		if err := st.send(ackFrame(conv, seq)); err != nil {
			s.ackMu.Lock()
			for c, q := range acks {
				s.acks[c] = max(s.acks[c], q)
			}
			s.ackMu.Unlock()
			return err
		}
	}
	return nil
}

// keepalive flushes acks and pings until ctx ends or a send fails.
func (s *grpcSession) keepalive(ctx context.Context, st *grpcStream, heartbeat time.Duration) {
	acks := time.NewTicker(s.dev.cfg.AckInterval)
	defer acks.Stop()
	ping := time.NewTicker(heartbeat)
	defer ping.Stop()
	var nonce uint64
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case <-acks.C:
			err = s.flushAcks(st)
		case <-s.ackKick:
			err = s.flushAcks(st)
		case <-ping.C:
			nonce++
			err = st.send(pingFrame(nonce))
		}
		if err != nil {
			return // the reader sees why
		}
	}
}

func (s *grpcSession) Send(ctx context.Context, conv, clientMsgID, text string) (*parleyv1.SendAck, error) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	p, ok := s.pending[clientMsgID]
	if !ok {
		s.order++
		p = &grpcPending{conv: conv, frame: sendFrame(conv, clientMsgID, text), order: s.order, done: make(chan struct{})}
		s.pending[clientMsgID] = p
	}
	// Read under the lock that added p: a stream opened later resends it.
	st := s.stream
	s.mu.Unlock()
	if !ok && st != nil {
		_ = st.send(p.frame) // on failure, the next stream resends it
	}
	select {
	case <-p.done:
		return p.ack, p.err
	case <-ctx.Done():
		s.mu.Lock()
		if s.pending[clientMsgID] == p {
			delete(s.pending, clientMsgID)
		}
		s.mu.Unlock()
		return nil, ctx.Err()
	}
}

func (s *grpcSession) resolve(clientMsgID string, ack *parleyv1.SendAck, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pending[clientMsgID]
	if !ok {
		return
	}
	delete(s.pending, clientMsgID)
	p.ack, p.err = ack, err
	close(p.done)
}

// fail ends the session: pending and later sends fail with err.
func (s *grpcSession) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	for id, p := range s.pending {
		delete(s.pending, id)
		p.err = err
		close(p.done)
	}
}

// Close flushes acks, half-closes the stream so the server ends it, and
// waits for the session's goroutines (cutting the stream after 2 s).
func (s *grpcSession) Close() error {
	s.beginClose()
	s.mu.Lock()
	st := s.stream
	s.mu.Unlock()
	if st != nil {
		_ = s.flushAcks(st)
		st.sendMu.Lock()
		_ = st.cs.CloseSend()
		st.sendMu.Unlock()
	}
	timer := time.NewTimer(grpcCloseTimeout)
	defer timer.Stop()
	select {
	case <-s.done:
	case <-timer.C:
	}
	s.cancel()
	<-s.done
	return nil
}
