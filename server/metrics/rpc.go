package metrics

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// RPC counts every call by procedure and code, and times unary calls.
// Procedures are the ones registered on the server (connect-go answers
// unknown paths before any interceptor), so the label set is bounded.
type RPC struct {
	handled  *prometheus.CounterVec
	duration *prometheus.HistogramVec
	procs    sync.Map // procedure -> *rpcProc
}

// rpcProc is one procedure's series, resolved on its first call.
type rpcProc struct {
	name     string
	handled  *prometheus.CounterVec
	duration prometheus.Observer // nil for streams, whose duration is their lifetime
	codes    [numCodes]atomic.Pointer[counterRef]
}

type counterRef struct{ c prometheus.Counter }

func newRPC(r *registrar) *RPC {
	return &RPC{
		handled: r.counterVec("rpc", "handled_total",
			"Calls completed, streams included, by procedure and code (ok or the Connect error code).", "procedure", "code"),
		duration: r.histogramVec("rpc", "duration_seconds",
			"Latency of unary calls by procedure, from the first interceptor to the handler's return.", latencyBuckets, "procedure"),
	}
}

// Interceptor records every call; install it first (outermost) so that
// refusals by later interceptors (authentication) are counted too. A nil
// RPC returns an interceptor that records nothing.
func (r *RPC) Interceptor() connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		if r == nil {
			return next
		}
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			p := r.proc(spec)
			start := time.Now()
			err := next(ctx, spec, stream)
			if p.duration != nil {
				p.duration.Observe(time.Since(start).Seconds())
			}
			p.count(codeOf(err))
			return err
		}
	}
}

func (r *RPC) proc(spec connect.Spec) *rpcProc {
	if p, ok := r.procs.Load(spec.Procedure); ok {
		return p.(*rpcProc)
	}
	p := &rpcProc{name: spec.Procedure, handled: r.handled}
	if spec.StreamType == connect.StreamTypeUnary {
		p.duration = r.duration.WithLabelValues(spec.Procedure)
	}
	actual, _ := r.procs.LoadOrStore(spec.Procedure, p)
	return actual.(*rpcProc)
}

func (p *rpcProc) count(code connect.Code) {
	if code >= numCodes {
		code = connect.CodeUnknown
	}
	ref := p.codes[code].Load()
	if ref == nil {
		ref = &counterRef{c: p.handled.WithLabelValues(p.name, codeName(code))}
		p.codes[code].Store(ref)
	}
	ref.c.Inc()
}

// codeOf is the code a client sees for err: context errors become
// Canceled or DeadlineExceeded, as connect-go reports them.
func codeOf(err error) connect.Code {
	var ce *connect.Error
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ce):
		return ce.Code()
	case errors.Is(err, context.Canceled):
		return connect.CodeCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return connect.CodeDeadlineExceeded
	default:
		return connect.CodeUnknown
	}
}
