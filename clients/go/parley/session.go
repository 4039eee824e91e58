package parley

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
)

// ErrClosed is returned by [Session.Send] and [Session.SendWithID] once the
// Session was closed.
var ErrClosed = errors.New("parley: session closed")

// closeFlushTimeout bounds how long Close waits for the final acks to reach
// the server and for the server to end the stream.
const closeFlushTimeout = 2 * time.Second

// Session is a device's live connection: it owns the Connect stream, re-opens
// it when it breaks (with exponential backoff and full jitter, see
// [WithBackoff]), when the server sends Resync, or when the server restarts,
// and delivers [Event]s on [Session.Events]. It is safe for concurrent use.
//
// Delivery: messages of each conversation are handed to the application in
// seq order, and a message the server delivers again after a reconnect is
// dropped (de-duplication by (conversation_id, seq) within an epoch). A
// message counts as handed, and is acknowledged to the server, once the
// application has received it from the Events channel; acks are coalesced per
// conversation ([WithAckInterval], [WithAckBatch]) and flushed by Close. After
// a crash the server redelivers from the last flushed ack, so the application
// can see a message again after a restart, never lose one it had not
// received.
//
// Back-pressure: the Events channel is unbuffered and the application must
// drain it. Received frames wait in a bounded queue ([WithQueueSize]); when it
// is full the Session stops reading its stream, sends are no longer confirmed,
// and the server soon drops the stream as a slow consumer. The Session then
// reconnects and catches up from its acknowledged cursors, so nothing is lost,
// but a permanently stalled reader makes no progress and keeps reconnecting.
//
// Ownership: the Session runs two goroutines of its own plus a reader and a
// writer per open stream. [Session.Close] stops and waits for all of them;
// cancelling the context given to [Client.Connect] starts the same shutdown,
// and Close must still be called to wait for it.
type Session struct {
	client *Client
	cfg    *sessionConfig
	logger *slog.Logger

	events         chan Event    // unbuffered; closed by dispatch on exit
	queue          chan queued   // bounded; closed by run once no producer is left
	kick           chan struct{} // capacity 1: "pending sends are waiting"
	closing        chan struct{} // closed by beginClose
	closeOnce      sync.Once
	stopAfterFunc  func() bool
	dispatcherDone chan struct{}
	done           chan struct{} // closed when run returns
	wg             sync.WaitGroup

	dedup *dedup
	acker *acker
	gen   atomic.Uint64 // epoch generation: bumped when the server's epoch changes

	mu        sync.Mutex // guards the fields below
	epoch     string
	connected bool   // a Welcome was seen at least once
	connGen   uint64 // counts streams that got past the handshake
	pending   map[string]*pendingSend
	order     uint64
	ended     bool
	err       error
}

// queued is an event waiting for the application. seq > 0 marks an item that
// moves the conversation's ack cursor once handed.
type queued struct {
	ev   Event
	gen  uint64
	conv string
	seq  uint64
}

// pendingSend is a SendFrame awaiting its SendAck or Error. It is re-sent on
// every new stream until answered, always with the same client_msg_id.
type pendingSend struct {
	conversationID string
	frame          *parleyv1.ClientFrame
	order          uint64
	sentGen        uint64 // connGen of the stream it was last written to
	waiters        int
	done           chan struct{} // closed once ack or err is set
	ack            *parleyv1.SendAck
	err            error
}

// Connect starts a Session for this device and returns at once; the first
// stream opens in the background and its outcome arrives as a
// [ConnectedEvent] or a [DisconnectedEvent]. Values of ctx reach every call
// the Session makes; cancelling ctx closes the Session gracefully (call
// [Session.Close] to wait). A device should hold one Session at a time: the
// server replaces an older stream of the same device with a newer one.
func (c *Client) Connect(ctx context.Context, opts ...SessionOption) *Session {
	cfg := newSessionConfig(opts)
	s := &Session{
		client:         c,
		cfg:            cfg,
		logger:         c.logger,
		events:         make(chan Event),
		queue:          make(chan queued, cfg.queueSize),
		kick:           make(chan struct{}, 1),
		closing:        make(chan struct{}),
		dispatcherDone: make(chan struct{}),
		done:           make(chan struct{}),
		dedup:          newDedup(),
		acker:          newAcker(cfg.ackBatch),
		epoch:          cfg.epoch,
		pending:        make(map[string]*pendingSend),
	}
	s.stopAfterFunc = context.AfterFunc(ctx, s.beginClose)
	runCtx := context.WithoutCancel(ctx)
	s.wg.Go(s.dispatch)
	s.wg.Go(func() { s.run(runCtx) })
	return s
}

// Events returns the channel on which the Session delivers events. It is
// closed after Close, or after a final [DisconnectedEvent] when the Session
// ends on its own (revoked credentials). See [Session] for back-pressure.
func (s *Session) Events() <-chan Event { return s.events }

// Done is closed when the Session stopped reconnecting: after Close, or when it
// ended on its own (see [Session.Err]).
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the Session ended on its own, e.g. an error wrapping
// [ErrRevoked]; nil while it runs and after Close.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Epoch returns the server epoch of the latest stream ("" before the first
// Welcome, unless seeded with [WithEpoch]). Keep it across runs to detect a
// store reset.
func (s *Session) Epoch() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch
}

// Send sends a text, image or file message (see [Text]) with a fresh
// client_msg_id (a UUIDv7) and returns the committed message once the server
// acknowledged it. If the stream breaks first, the same client_msg_id is sent
// again on the next stream, so at most one message is committed. The error is
// ctx's, [ErrClosed], the server's verdict as a *connect.Error
// (InvalidArgument, NotFound, PermissionDenied, ResourceExhausted, ...), or
// InvalidArgument for content that cannot be encoded (invalid UTF-8). After
// a ctx error the message may or may not be committed: use [Session.SendWithID]
// to be able to retry it.
func (s *Session) Send(ctx context.Context, conversationID string, content *parleyv1.Content) (*parleyv1.Message, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("parley: client_msg_id: %w", err)
	}
	ack, err := s.SendWithID(ctx, conversationID, id.String(), content)
	if err != nil {
		return nil, err
	}
	return ack.GetMessage(), nil
}

// SendWithID is Send with a caller-chosen client_msg_id (1 to 64 bytes, unique
// per sender and conversation). Calling it again with the same id, in this or
// a later Session, returns the original message with Duplicate set instead of
// committing a second one. Concurrent calls with the same id share one frame
// and one answer; reusing an id for another conversation is an error.
func (s *Session) SendWithID(ctx context.Context, conversationID, clientMsgID string, content *parleyv1.Content) (*parleyv1.SendAck, error) {
	s.mu.Lock()
	if s.ended {
		err := s.endErrLocked()
		s.mu.Unlock()
		return nil, err
	}
	p, ok := s.pending[clientMsgID]
	if ok && p.conversationID != conversationID {
		s.mu.Unlock()
		return nil, fmt.Errorf("parley: client_msg_id %q is pending for another conversation", clientMsgID)
	}
	if !ok {
		frame := &parleyv1.ClientFrame{Kind: &parleyv1.ClientFrame_Send{Send: &parleyv1.SendFrame{
			ConversationId: conversationID,
			ClientMsgId:    clientMsgID,
			Content:        content,
		}}}
		// A frame that cannot be encoded (invalid UTF-8) would break every
		// stream it is retried on: refuse it here.
		if _, err := proto.Marshal(frame); err != nil {
			s.mu.Unlock()
			return nil, connect.NewError(connect.CodeInvalidArgument, "parley: cannot encode message: "+err.Error())
		}
		s.order++
		p = &pendingSend{conversationID: conversationID, frame: frame, order: s.order, done: make(chan struct{})}
		s.pending[clientMsgID] = p
	}
	p.waiters++
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}

	select {
	case <-p.done:
		return p.ack, p.err
	case <-ctx.Done():
		s.mu.Lock()
		p.waiters--
		if p.waiters == 0 && s.pending[clientMsgID] == p {
			delete(s.pending, clientMsgID)
		}
		s.mu.Unlock()
		return nil, ctx.Err()
	}
}

// Close stops the Session: it stops handing out events, flushes the acks of
// everything the application received, closes the stream and waits for every
// goroutine the Session started. Pending sends fail with [ErrClosed]. It is
// idempotent and always returns nil.
func (s *Session) Close() error {
	s.beginClose()
	s.stopAfterFunc()
	s.wg.Wait()
	return nil
}

// Text returns content holding a text message.
func Text(text string) *parleyv1.Content {
	return &parleyv1.Content{Body: &parleyv1.Content_Text{Text: text}}
}

func (s *Session) beginClose() {
	s.closeOnce.Do(func() { close(s.closing) })
}

func (s *Session) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// run is the supervisor: it opens streams until the Session closes or ends.
func (s *Session) run(ctx context.Context) {
	defer close(s.done)
	attempt := 0
	var err error
	for {
		err = s.connectOnce(ctx, &attempt)
		if s.isClosing() || isFatal(err) {
			break
		}
		delay := s.cfg.backoff.delay(attempt, jitter)
		attempt++
		s.logger.InfoContext(ctx, "parley: stream lost, reconnecting", "user_id", s.client.UserID(), "err", err, "retry_in", delay)
		if !s.push(queued{ev: &DisconnectedEvent{Err: err, RetryIn: delay}}) {
			break
		}
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-s.closing:
			timer.Stop()
		}
	}
	closing := s.isClosing()
	s.end(err, closing)
	if !closing {
		s.logger.WarnContext(ctx, "parley: session ended", "user_id", s.client.UserID(), "err", err)
		s.push(queued{ev: &DisconnectedEvent{Err: err, Final: true}})
	}
	// Every producer (this goroutine and the stream readers it waited for) is
	// done: let dispatch drain what is left and close Events.
	close(s.queue)
}

// dispatch hands queued events to the application and records what it
// handed for acknowledgement.
func (s *Session) dispatch() {
	defer close(s.events)
	defer close(s.dispatcherDone)
	for {
		var it queued
		select {
		case next, ok := <-s.queue:
			if !ok {
				return
			}
			it = next
		case <-s.closing:
			return
		}
		if it.seq > 0 && it.gen != s.gen.Load() {
			continue // from before an epoch change: that history is gone
		}
		select {
		case s.events <- it.ev:
		case <-s.closing:
			return
		}
		if it.seq > 0 {
			s.acker.handed(it.gen, it.conv, it.seq)
		}
	}
}

// push queues an event for the application, blocking while the queue is full.
// It reports false when the Session is closing.
func (s *Session) push(it queued) bool {
	select {
	case s.queue <- it:
		return true
	case <-s.closing:
		return false
	}
}

// resolve answers the pending send clientMsgID; false if none is pending.
func (s *Session) resolve(clientMsgID string, ack *parleyv1.SendAck, err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pending[clientMsgID]
	if !ok {
		return false
	}
	delete(s.pending, clientMsgID)
	p.ack, p.err = ack, err
	close(p.done)
	return true
}

// unsent returns, in the order they were first sent, the pending frames not
// yet written to stream connGen, and marks them written.
func (s *Session) unsent(connGen uint64) []*parleyv1.ClientFrame {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ps []*pendingSend
	for _, p := range s.pending {
		if p.sentGen != connGen {
			p.sentGen = connGen
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps, func(a, b *pendingSend) int { return cmp.Compare(a.order, b.order) })
	frames := make([]*parleyv1.ClientFrame, len(ps))
	for i, p := range ps {
		frames[i] = p.frame
	}
	return frames
}

// end marks the Session ended and fails every pending send.
func (s *Session) end(err error, closing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	if !closing {
		s.err = err
	}
	failed := s.endErrLocked()
	for id, p := range s.pending {
		delete(s.pending, id)
		p.err = failed
		close(p.done)
	}
}

func (s *Session) endErrLocked() error {
	if s.err != nil {
		return s.err
	}
	return ErrClosed
}

// isFatal reports errors that reconnecting cannot fix: the device's
// credentials are gone.
func isFatal(err error) bool {
	return errors.Is(err, ErrRevoked) || connect.CodeOf(err) == connect.CodeUnauthenticated
}
