// Package health implements the standard gRPC health-checking protocol,
// grpc.health.v1.Health, for a Connect server. Kubernetes probes,
// grpc_health_probe, grpcurl and load balancers speak it over gRPC; Connect
// and gRPC-Web clients can call it too.
package health

import (
	"context"
	"sync"

	"connectrpc.com/connect/v2"
	healthv1 "github.com/parley-im/parley/clients/go/gen/grpc/health/v1"
	"github.com/parley-im/parley/clients/go/gen/grpc/health/v1/healthv1connect"
)

// Status is a service's serving status, as defined by grpc.health.v1.
type Status = healthv1.HealthCheckResponse_ServingStatus

// The statuses a service can be set to. ServiceUnknown is only ever reported
// by Watch, for a service that has not been registered.
const (
	Unknown        = healthv1.HealthCheckResponse_UNKNOWN
	Serving        = healthv1.HealthCheckResponse_SERVING
	NotServing     = healthv1.HealthCheckResponse_NOT_SERVING
	ServiceUnknown = healthv1.HealthCheckResponse_SERVICE_UNKNOWN
)

// Server is the empty service name, which stands for the whole server.
const Server = ""

// Checker holds the serving status of each service and serves it as
// grpc.health.v1.Health. It is safe for concurrent use.
//
// A new Checker reports Server as Serving (as grpc-go's health server does);
// every other service is unknown until SetServing registers it. Shutdown turns
// everything NotServing for good, so readiness probes fail while the server
// drains; Close also ends every Watch stream, so that an HTTP server's
// graceful shutdown does not wait on them.
//
// Watch runs on the handler goroutine of its RPC and starts no goroutines of
// its own: it returns when the client goes away or the Checker is closed.
type Checker struct {
	mu       sync.Mutex
	statuses map[string]Status
	// watchers holds, per service, the channel of every open Watch stream.
	watchers map[string]map[chan Status]struct{}
	shutdown bool
	closed   bool
	done     chan struct{} // closed by Close
}

var _ healthv1connect.HealthHandler = (*Checker)(nil)

// NewChecker returns a Checker whose only service is Server, reported as
// Serving.
func NewChecker() *Checker {
	return &Checker{
		statuses: map[string]Status{Server: Serving},
		watchers: make(map[string]map[chan Status]struct{}),
		done:     make(chan struct{}),
	}
}

// Register mounts the Checker on server as grpc.health.v1.Health.
func (c *Checker) Register(server *connect.Server) {
	healthv1connect.RegisterHealthHandler(server, c)
}

// SetServing records status for service (Server for the whole server),
// registering the service if it is new, and notifies its watchers of a
// change. After Shutdown or Close it does nothing: a draining server never
// goes back to Serving.
func (c *Checker) SetServing(service string, status Status) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shutdown {
		return
	}
	c.setLocked(service, status)
}

// Shutdown sets every registered service to NotServing and ignores later
// calls to SetServing. Watch streams stay open and receive the change. It is
// idempotent.
func (c *Checker) Shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shutdownLocked()
}

// Close does what Shutdown does, then ends every Watch stream with
// CodeUnavailable (the protocol tells clients to reconnect on it) and makes
// new ones fail the same way. Check keeps answering. It is idempotent and
// does not wait: each Watch returns on its own handler goroutine. Call it
// before http.Server.Shutdown, which otherwise waits for open Watch streams
// until its deadline.
func (c *Checker) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shutdownLocked()
	if !c.closed {
		c.closed = true
		close(c.done)
	}
}

// Status returns the status of service and whether it is registered.
func (c *Checker) Status(service string) (Status, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.statuses[service]
	return s, ok
}

// Check implements grpc.health.v1.Health.Check. An unregistered service fails
// with CodeNotFound, as in grpc-go.
func (c *Checker) Check(_ context.Context, req *healthv1.HealthCheckRequest) (*healthv1.HealthCheckResponse, error) {
	status, ok := c.Status(req.GetService())
	if !ok {
		return nil, connect.Errorf(connect.CodeNotFound, "unknown service %q", req.GetService())
	}
	return &healthv1.HealthCheckResponse{Status: status}, nil
}

// Watch implements grpc.health.v1.Health.Watch. It sends the current status
// at once (ServiceUnknown for an unregistered service, which the stream then
// waits on), then every change. Changes that happen faster than the client
// reads are coalesced: the client always ends on the latest status. It returns
// the context's error when the client goes away, CodeUnavailable when the
// Checker is closed, and the send error if the stream breaks.
func (c *Checker) Watch(ctx context.Context, req *healthv1.HealthCheckRequest, stream healthv1connect.HealthWatchServerStream) error {
	service := req.GetService()
	updates, ok := c.subscribe(service)
	if !ok {
		return errClosed()
	}
	defer c.unsubscribe(service, updates)

	var last Status = -1
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return errClosed()
		case status := <-updates:
			if status == last {
				continue
			}
			last = status
			if err := stream.Send(&healthv1.HealthCheckResponse{Status: status}); err != nil {
				return err
			}
		}
	}
}

// subscribe registers a watcher of service and returns its channel, already
// holding the current status; ok is false once the Checker is closed.
func (c *Checker) subscribe(service string) (updates chan Status, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, false
	}
	// One slot: a slow reader only ever needs the latest status.
	updates = make(chan Status, 1)
	updates <- c.statusLocked(service)
	if c.watchers[service] == nil {
		c.watchers[service] = make(map[chan Status]struct{})
	}
	c.watchers[service][updates] = struct{}{}
	return updates, true
}

func (c *Checker) unsubscribe(service string, updates chan Status) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.watchers[service], updates)
	if len(c.watchers[service]) == 0 {
		delete(c.watchers, service)
	}
}

// watching reports how many Watch streams are open, for tests.
func (c *Checker) watching() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, ws := range c.watchers {
		n += len(ws)
	}
	return n
}

func (c *Checker) shutdownLocked() {
	if c.shutdown {
		return
	}
	c.shutdown = true
	for service := range c.statuses {
		c.setLocked(service, NotServing)
	}
}

func (c *Checker) setLocked(service string, status Status) {
	c.statuses[service] = status
	for updates := range c.watchers[service] {
		// Replace whatever the watcher has not read yet. Only setLocked sends,
		// under c.mu, so after the drain the send cannot block.
		select {
		case <-updates:
		default:
		}
		updates <- status
	}
}

func (c *Checker) statusLocked(service string) Status {
	if s, ok := c.statuses[service]; ok {
		return s
	}
	return ServiceUnknown
}

func errClosed() error {
	return connect.NewError(connect.CodeUnavailable, "server is shutting down")
}
