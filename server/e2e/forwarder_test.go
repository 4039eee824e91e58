package e2e_test

import (
	"io"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// forwarder is a loopback TCP proxy that gives clients one stable address in
// front of a server whose port changes when testserver restarts it, so SDK
// Sessions ride through the restart on their own reconnect logic.
type forwarder struct {
	ln net.Listener
	wg sync.WaitGroup // accept loop and every connection's copiers

	mu     sync.Mutex
	target string
	conns  map[net.Conn]struct{}
	closed bool
}

func newForwarder(t *testing.T, target string) *forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &forwarder{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	f.wg.Go(f.accept)
	t.Cleanup(f.close)
	return f
}

// URL is the stable base URL for clients.
func (f *forwarder) URL() string { return "http://" + f.ln.Addr().String() }

// setTarget points new connections at addr.
func (f *forwarder) setTarget(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.target = addr
}

// dropAll closes every open connection, as a network failure would.
func (f *forwarder) dropAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		_ = c.Close()
	}
}

func (f *forwarder) close() {
	_ = f.ln.Close()
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.dropAll()
	f.wg.Wait()
}

func (f *forwarder) accept() {
	for {
		client, err := f.ln.Accept()
		if err != nil {
			return // closed
		}
		f.wg.Go(func() { f.serve(client) })
	}
}

func (f *forwarder) serve(client net.Conn) {
	f.mu.Lock()
	target := f.target
	f.mu.Unlock()
	server, err := net.Dial("tcp", target)
	if err != nil {
		_ = client.Close()
		return
	}
	if !f.track(client, server) {
		return
	}
	defer f.untrack(client, server)
	f.wg.Go(func() {
		_, _ = io.Copy(server, client)
		_ = server.Close()
		_ = client.Close()
	})
	_, _ = io.Copy(client, server)
	_ = client.Close()
	_ = server.Close()
}

// track registers both ends; false (and both closed) if the forwarder is
// closing.
func (f *forwarder) track(conns ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	}
	for _, c := range conns {
		f.conns[c] = struct{}{}
	}
	return true
}

func (f *forwarder) untrack(conns ...net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range conns {
		delete(f.conns, c)
	}
}
