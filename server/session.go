package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/server/auth"
	"github.com/parley-im/parley/server/engine"
	"github.com/parley-im/parley/server/hub"
	"github.com/parley-im/parley/server/metrics"
	"github.com/parley-im/parley/server/wire"
	"github.com/parley-im/parley/storage/analytics"
)

// errClientGone ends a session whose client closed its side of the stream.
var errClientGone = errors.New("client closed the stream")

// drainTimeout bounds how long a half-closed stream stays open to send the
// answers still owed to the client.
const drainTimeout = 5 * time.Second

// session is one device stream. The handler goroutine runs the session
// loop (reading client frames); a writer goroutine is the only one that
// sends on the stream; a catch-up goroutine streams the backlog; a
// send-ack goroutine waits for commits in submission order. All of them
// end when the hub connection closes, and the handler waits for them.
type session struct {
	s    *Server
	id   auth.Identity
	conn *hub.Conn
	send func(*parleyv1.ServerFrame) error

	// inflight carries submitted sends, in order, to the send-ack
	// goroutine, and bounds the sends awaiting commit.
	inflight *inflight
	// announced is set once sync has recorded the device as online, so
	// finish knows to record it offline.
	announced bool
}

type pendingSend struct {
	clientMsgID string
	wait        func() (engine.SendResult, error)
}

// runSession serves a device stream of procedure proc until the client
// leaves, the connection is closed by the hub (slow consumer, replaced,
// revoked, shutdown) or the heartbeat times out. frames delivers decoded
// client frames (nil for Subscribe, which has none).
func (s *Server) runSession(ctx context.Context, proc metrics.Procedure, send func(*parleyv1.ServerFrame) error, frames <-chan frameOrErr) error {
	id, ok := auth.IdentityFrom(ctx)
	if !ok {
		return connect.NewError(connect.CodeUnauthenticated, "missing access token")
	}
	if s.shuttingDown.Load() {
		return connect.NewError(connect.CodeUnavailable, "server shutting down, reconnect elsewhere")
	}
	if !s.layout.Owns(id.UserID) {
		return s.wrongShard(id.UserID)
	}
	epoch, err := s.store.Epoch(ctx)
	if err != nil {
		return toConnect(ctx, s.logger, "session", err)
	}
	// Welcome goes out before the writer starts, so it is always first.
	welcome := &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Welcome{Welcome: &parleyv1.Welcome{
		UserId:            id.UserID,
		DeviceId:          id.DeviceID,
		Epoch:             epoch,
		HeartbeatInterval: durationpb.New(s.cfg.HeartbeatInterval),
		HeartbeatTimeout:  durationpb.New(s.cfg.HeartbeatTimeout),
		ServerTime:        timestamppb.New(s.now()),
	}}}
	if err := send(welcome); err != nil {
		return err
	}

	conn, first := s.hub.Register(id.UserID, id.DeviceID)
	// CloseStreams sets the flag before closing every registered
	// connection, so a stream registering meanwhile is closed by one or
	// the other, and shutdown never waits on it.
	if s.shuttingDown.Load() {
		conn.Close(hub.ErrShutdown)
	}
	ss := &session{s: s, id: id, conn: conn, send: send, inflight: newInflight(s.cfg.MaxInflightSends)}
	var protocol string
	if info, ok := connect.CallInfoForServerContext(ctx); ok {
		protocol = info.Protocol
	}
	s.streams.Opened(proc, protocol)
	s.record(analytics.Event{Kind: analytics.EventConnectionOpened, At: s.now(), UserID: id.UserID, DeviceID: id.DeviceID})
	var wg, acks sync.WaitGroup
	wg.Go(ss.writeLoop)
	wg.Go(func() { ss.sync(ctx, first) })
	acks.Go(ss.ackLoop)

	var reason error
	if frames == nil {
		reason = ss.keepAlive(ctx)
	} else {
		reason = ss.readLoop(ctx, frames)
	}
	ss.inflight.close()
	if errors.Is(reason, errClientGone) {
		// The client closed its half of the stream; it still gets the
		// answers to what it sent before, then the stream ends.
		acks.Wait()
		ss.drain(ctx)
	}
	conn.Close(reason)
	acks.Wait()
	wg.Wait()
	ss.finish(ctx)
	// The first Close counts: a slow consumer, say, ends the read loop
	// with its own reason.
	s.streams.Closed(proc, protocol, disconnectReason(conn.Err()))
	s.record(analytics.Event{Kind: analytics.EventConnectionClosed, At: s.now(), UserID: id.UserID, DeviceID: id.DeviceID})

	if errors.Is(reason, errClientGone) {
		return nil
	}
	return toConnect(ctx, s.logger, "session", reason)
}

// readLoop runs a Connect session: it handles client frames until the
// session should end, and returns why.
func (ss *session) readLoop(ctx context.Context, frames <-chan frameOrErr) error {
	timer := time.NewTimer(ss.s.cfg.HeartbeatTimeout)
	defer timer.Stop()
	for {
		select {
		case <-ss.conn.Done():
			return ss.conn.Err()
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return hub.ErrHeartbeatTimeout
		case f, ok := <-frames:
			if !ok {
				return errClientGone
			}
			if f.err != nil {
				if errors.Is(f.err, io.EOF) {
					return errClientGone
				}
				return f.err
			}
			timer.Reset(ss.s.cfg.HeartbeatTimeout)
			if err := ss.handleFrame(ctx, f.frame); err != nil {
				return err
			}
		}
	}
}

// keepAlive runs a Subscribe session, which has no client frames: it
// sends a keep-alive every heartbeat interval, so idle proxies do not cut
// the stream, until the session should end, and returns why.
func (ss *session) keepAlive(ctx context.Context) error {
	t := time.NewTicker(ss.s.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ss.conn.Done():
			return ss.conn.Err()
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			ss.conn.Deliver(&parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Pong{Pong: &parleyv1.Pong{}}})
		}
	}
}

// writeLoop is the only sender on the stream. When the connection closes
// for a reason the client should act on, it says so with a Resync frame.
func (ss *session) writeLoop() {
	ctx := context.Background()
	for {
		f, ok := ss.conn.Next(ctx)
		if !ok {
			break
		}
		if f == nil {
			// The drain marker: everything queued before it was sent.
			ss.conn.Close(errClientGone)
			return
		}
		if err := ss.send(f); err != nil {
			// The client is gone (reset, network); nothing to report.
			ss.conn.Close(fmt.Errorf("%w: send: %w", errClientGone, err))
			return
		}
	}
	reason := ss.conn.Err()
	for _, r := range []error{hub.ErrSlowConsumer, hub.ErrReplaced, hub.ErrShutdown, hub.ErrHeartbeatTimeout} {
		if errors.Is(reason, r) {
			if ss.send(&parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Resync{Resync: &parleyv1.Resync{Reason: r.Error()}}}) == nil {
				ss.s.streams.Resync(disconnectReason(r))
			}
			return
		}
	}
}

// drain waits, for a bounded time, until the writer has sent every frame
// queued so far.
func (ss *session) drain(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, drainTimeout)
	defer cancel()
	if !ss.conn.PushDrainMarker(ctx) {
		return
	}
	select {
	case <-ss.conn.Done():
	case <-ctx.Done():
	}
}

// sync streams the backlog, announces presence, then repairs the
// connection whenever its live messages skip ahead (see hub.Conn) until
// the connection closes.
func (ss *session) sync(ctx context.Context, firstOfUser bool) {
	if err := ss.s.engine.CatchUp(ctx, ss.conn); err != nil {
		ss.conn.Close(err)
		return
	}
	ss.s.presence.Connected(ctx, ss.id.UserID, ss.id.DeviceID)
	ss.announced = true
	peers := ss.s.directPeers(ctx, ss.id.UserID)
	online := ss.s.presence.Online(ctx, peers)
	for _, p := range peers {
		if online[p] {
			ss.conn.Deliver(presenceFrame(p, true, time.Time{}))
		}
	}
	if firstOfUser {
		// First here, which in a cluster may not be first anywhere: peers
		// may hear "online" twice, which changes nothing for them.
		ss.s.notifyPeers(ctx, peers, presenceFrame(ss.id.UserID, true, time.Time{}))
	}
	for {
		select {
		case <-ss.conn.Done():
			return
		case <-ss.conn.Repairs():
			if err := ss.s.engine.Repair(ctx, ss.conn); err != nil {
				ss.conn.Close(err)
				return
			}
		}
	}
}

// ackLoop answers submitted sends in submission order once each commit
// returns: with an Error frame, or a duplicate's SendAck. New messages are
// acknowledged by the fan-out instead (see parley.v1.SendAck).
func (ss *session) ackLoop() {
	for {
		p, ok := ss.inflight.pop()
		if !ok {
			return
		}
		res, err := p.wait()
		var f *parleyv1.ServerFrame
		if err != nil {
			f = ss.s.sendErrorFrame(p.clientMsgID, toConnect(context.Background(), ss.s.logger, "send", err))
		} else if res.Err != nil {
			f = ss.s.sendErrorFrame(p.clientMsgID, toConnect(context.Background(), ss.s.logger, "send", res.Err))
		} else if res.Duplicate {
			f = &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_SendAck{SendAck: &parleyv1.SendAck{
				ClientMsgId: p.clientMsgID,
				Message:     wire.Message(res.Message),
				Duplicate:   true,
			}}}
		} else {
			// The fan-out sends the SendAck of a new message, in its
			// place in the stream.
			continue
		}
		ss.conn.Deliver(f)
	}
}

// finish runs after every session goroutine ended: it unregisters the
// device, writes its acks, and announces it offline when it was the
// user's last device.
func (ss *session) finish(ctx context.Context) {
	// The stream's context may be gone; the cleanup must still happen.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	last := ss.s.hub.Unregister(ss.conn)
	if err := ss.s.engine.FlushAcks(ctx, ss.id.DeviceID); err != nil {
		ss.s.logger.Warn("flush acks on disconnect", "user_id", ss.id.UserID, "err", err)
	}
	if !ss.announced {
		return // never announced online
	}
	stillOnline := ss.s.presence.Disconnected(ctx, ss.id.UserID, ss.id.DeviceID)
	if last && !stillOnline {
		// Peers read afresh: direct conversations started while the
		// stream was open count too.
		ss.s.notifyPeers(ctx, ss.s.directPeers(ctx, ss.id.UserID), presenceFrame(ss.id.UserID, false, ss.s.now()))
	}
}

// handleFrame acts on one client frame. Rejections of a frame are answered
// with an Error frame; only failures of the stream itself end it.
func (ss *session) handleFrame(ctx context.Context, f *parleyv1.ClientFrame) error {
	if err := ss.s.validator.Validate(f); err != nil {
		if send := f.GetSend(); send != nil {
			ss.conn.Deliver(ss.s.sendErrorFrame(send.GetClientMsgId(), invalidArgument(err)))
		} else {
			ss.conn.Deliver(errorFrame("", invalidArgument(err)))
		}
		return nil
	}
	switch k := f.GetKind().(type) {
	case *parleyv1.ClientFrame_Send:
		if err := ss.s.allowSend(ss.id.DeviceID); err != nil {
			ss.conn.Deliver(ss.s.sendErrorFrame(k.Send.GetClientMsgId(), err))
			return nil
		}
		msg, err := ss.s.newMessage(ctx, ss.id, k.Send.GetConversationId(), k.Send.GetClientMsgId(), k.Send.GetContent())
		if err != nil {
			ss.conn.Deliver(ss.s.sendErrorFrame(k.Send.GetClientMsgId(), err))
			return nil
		}
		wait, err := ss.s.engine.Submit(ctx, msg)
		if err != nil {
			return err
		}
		// Waits while MaxInflightSends are awaiting commit: the stream
		// is not read meanwhile, which is the back-pressure.
		if !ss.inflight.push(pendingSend{clientMsgID: msg.ClientMsgID, wait: wait}, ss.conn.Done()) {
			return ss.conn.Err()
		}
	case *parleyv1.ClientFrame_Ack:
		conv, seq := k.Ack.GetConversationId(), k.Ack.GetSeq()
		if last, ok := ss.conn.Last(conv); ok && seq <= last {
			// This stream handed the device everything up to last, so the
			// ack needs no check against the store: the common case, and
			// a store query per ack would cost more than the message.
			ss.s.engine.Ack(ss.id.DeviceID, conv, seq)
			return nil
		}
		if err := ss.s.ack(ctx, ss.id, conv, seq); err != nil {
			ss.conn.Deliver(errorFrame("", err))
		}
	case *parleyv1.ClientFrame_Read:
		if _, err := ss.s.markRead(ctx, ss.id, k.Read.GetConversationId(), k.Read.GetSeq()); err != nil {
			ss.conn.Deliver(errorFrame("", err))
		}
	case *parleyv1.ClientFrame_Typing:
		if err := ss.s.typing(ctx, ss.id, k.Typing.GetConversationId(), k.Typing.GetTyping()); err != nil {
			ss.conn.Deliver(errorFrame("", err))
		}
	case *parleyv1.ClientFrame_Ping:
		ss.conn.Deliver(&parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Pong{Pong: &parleyv1.Pong{Nonce: k.Ping.GetNonce()}}})
	}
	return nil
}

// frameOrErr is one result of reading the client half of a stream.
type frameOrErr struct {
	frame *parleyv1.ClientFrame
	err   error
}

func errorFrame(clientMsgID string, err error) *parleyv1.ServerFrame {
	code, msg := wireError(err)
	return &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Error{Error: &parleyv1.Error{
		ClientMsgId: clientMsgID, Code: code.String(), Message: msg,
	}}}
}

// sendErrorFrame is errorFrame for a refused or failed send, which it
// counts.
func (s *Server) sendErrorFrame(clientMsgID string, err error) *parleyv1.ServerFrame {
	code, _ := wireError(err)
	s.streams.SendError(code)
	return errorFrame(clientMsgID, err)
}

// wireError is the code and message an Error frame carries for err.
func wireError(err error) (connect.Code, string) {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Code(), ce.Message()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return connect.CodeCanceled, "canceled"
	}
	return connect.CodeInternal, "internal error"
}

// disconnectReason classifies why a stream's connection closed.
func disconnectReason(err error) metrics.Reason {
	var ce *connect.Error
	switch {
	case errors.Is(err, hub.ErrSlowConsumer):
		return metrics.ReasonSlowConsumer
	case errors.Is(err, hub.ErrReplaced):
		return metrics.ReasonReplaced
	case errors.Is(err, hub.ErrShutdown):
		return metrics.ReasonShutdown
	case errors.Is(err, hub.ErrRevoked):
		return metrics.ReasonRevoked
	case errors.Is(err, hub.ErrHeartbeatTimeout):
		return metrics.ReasonHeartbeatTimeout
	case errors.Is(err, errClientGone), errors.Is(err, context.Canceled),
		errors.As(err, &ce) && ce.Code() == connect.CodeCanceled:
		return metrics.ReasonClientClosed
	default:
		return metrics.ReasonError
	}
}

func presenceFrame(userID string, online bool, lastSeen time.Time) *parleyv1.ServerFrame {
	p := &parleyv1.Presence{UserId: userID, Online: online}
	if !lastSeen.IsZero() {
		p.LastSeenAt = timestamppb.New(lastSeen)
	}
	return &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Presence{Presence: p}}
}
