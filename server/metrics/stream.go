package metrics

import (
	"net"
	"net/http"

	"connectrpc.com/connect/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Procedure is a streaming procedure of ChatService.
type Procedure int

// The device streams.
const (
	// ProcConnect is ChatService.Connect, the bidirectional stream.
	ProcConnect Procedure = iota
	// ProcSubscribe is ChatService.Subscribe, the browsers' server stream.
	ProcSubscribe
	numProcedures
)

var procedureNames = [numProcedures]string{"connect", "subscribe"}

// protocolNames are the wire protocols connect-go reports in
// connect.CallInfo.Protocol; anything else counts as "other".
var protocolNames = [...]string{"connect", "grpc", "grpcweb", "other"}

func protocolIndex(protocol string) int {
	for i, p := range protocolNames[:len(protocolNames)-1] {
		if p == protocol {
			return i
		}
	}
	return len(protocolNames) - 1
}

// Reason is why a device stream ended.
type Reason int

// The reasons a stream ends. The first five are the hub's close reasons
// (server/hub ErrSlowConsumer, ErrReplaced, ErrShutdown, ErrRevoked,
// ErrHeartbeatTimeout).
const (
	ReasonSlowConsumer Reason = iota
	ReasonReplaced
	ReasonShutdown
	ReasonRevoked
	ReasonHeartbeatTimeout
	// ReasonClientClosed: the client ended the stream or went away.
	ReasonClientClosed
	// ReasonError: anything else (a store failure during catch-up, ...).
	ReasonError
	numReasons
)

var reasonNames = [numReasons]string{"slow_consumer", "replaced", "shutdown", "revoked", "heartbeat_timeout", "client_closed", "error"}

// numCodes covers every connect.Code (1..16) and OK (0).
const numCodes = 17

// codeName is the label of a code: "ok" or connect's snake_case name.
func codeName(c connect.Code) string {
	if c == 0 {
		return "ok"
	}
	return c.String()
}

// HTTP is the API listener's connections.
type HTTP struct {
	conns prometheus.Gauge
}

func newHTTP(r *registrar) *HTTP {
	return &HTTP{conns: r.gauge("http", "connections",
		"Client connections (TCP) open on the API listener; each carries any number of streams over HTTP/2.")}
}

// ConnState is an http.Server.ConnState hook that keeps the count of open
// connections.
func (h *HTTP) ConnState(_ net.Conn, state http.ConnState) {
	if h == nil {
		return
	}
	switch state {
	case http.StateNew:
		h.conns.Inc()
	case http.StateClosed, http.StateHijacked:
		h.conns.Dec()
	default:
	}
}

// Stream is the device streams' lifecycle and the outcomes of sends.
type Stream struct {
	open        [numProcedures][len(protocolNames)]prometheus.Gauge
	opened      [numProcedures][len(protocolNames)]prometheus.Counter
	disconnects [numReasons]prometheus.Counter
	resyncs     [numReasons]prometheus.Counter
	sendErrors  [numCodes]prometheus.Counter
}

func newStream(r *registrar) *Stream {
	s := &Stream{}
	open := r.gaugeVec("stream", "open", "Device streams open now, by procedure (connect: bidirectional, subscribe: server stream) and wire protocol.", "procedure", "protocol")
	opened := r.counterVec("stream", "opened_total", "Device streams opened (past authentication and the shard check), by procedure and wire protocol.", "procedure", "protocol")
	for p, pn := range procedureNames {
		for i, proto := range protocolNames {
			s.open[p][i] = open.WithLabelValues(pn, proto)
			s.opened[p][i] = opened.WithLabelValues(pn, proto)
		}
	}
	disconnects := r.counterVec("stream", "disconnects_total", "Device streams ended, by reason; slow_consumer means the device's outbound queue overflowed.", "reason")
	resyncs := r.counterVec("stream", "resyncs_total", "Resync frames sent: devices told to reconnect and catch up from their cursors, by reason.", "reason")
	for i, name := range reasonNames {
		s.disconnects[i] = disconnects.WithLabelValues(name)
		s.resyncs[i] = resyncs.WithLabelValues(name)
	}
	sendErrors := r.counterVec("messages", "send_errors_total", "Sends refused or failed (stream Error frames and SendMessage errors), by code.", "code")
	for c := range connect.Code(numCodes) {
		if c == 0 {
			continue
		}
		s.sendErrors[c] = sendErrors.WithLabelValues(codeName(c))
	}
	return s
}

// Opened records a stream opened with a protocol (connect.CallInfo's).
func (s *Stream) Opened(p Procedure, protocol string) {
	if s == nil {
		return
	}
	i := protocolIndex(protocol)
	s.opened[p][i].Inc()
	s.open[p][i].Inc()
}

// Closed records the end of a stream Opened with the same arguments, and
// why it ended.
func (s *Stream) Closed(p Procedure, protocol string, reason Reason) {
	if s == nil {
		return
	}
	s.open[p][protocolIndex(protocol)].Dec()
	s.disconnects[reason].Inc()
}

// Resync records a Resync frame sent for reason.
func (s *Stream) Resync(reason Reason) {
	if s == nil {
		return
	}
	s.resyncs[reason].Inc()
}

// SendError records a send answered with an error of code.
func (s *Stream) SendError(code connect.Code) {
	if s == nil || code <= 0 || code >= numCodes {
		return
	}
	s.sendErrors[code].Inc()
}
