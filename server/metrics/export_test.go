package metrics

import (
	"connectrpc.com/connect/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrorsFor is the error counter of a store op (by its label).
func (m *Store) ErrorsFor(op string) prometheus.Counter {
	for i, n := range opNames {
		if n == op {
			return m.errors[i]
		}
	}
	return nil
}

// HandledFor is the call counter of a procedure and code.
func (r *RPC) HandledFor(procedure string, code connect.Code) prometheus.Counter {
	return r.handled.WithLabelValues(procedure, codeName(code))
}
