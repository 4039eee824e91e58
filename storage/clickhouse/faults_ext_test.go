package clickhouse_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/clickhouse"
	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// TestRestart halts the server between two batches: writes fail with
// ErrUnavailable while it is down, succeed once it is back, and a replay
// of the batch written before the outage doubles nothing.
func TestRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := realsvc.StartClickHouseTB(t)
	name := srv.NewDatabase(t)
	cfg := testConfig(srv, name)
	cfg.CallTimeout = 5 * time.Second
	db := open(t, cfg)

	before := testMessages("c1", 1, 500)
	require.NoError(t, db.WriteMessages(ctx, before))

	require.NoError(t, srv.Halt())
	during := testMessages("c1", 501, 500)
	err := db.WriteMessages(ctx, during)
	require.ErrorIs(t, err, storage.ErrUnavailable)
	require.ErrorContains(t, err, "clickhouse: write messages")
	_, err = db.Count(ctx)
	require.ErrorIs(t, err, storage.ErrUnavailable)

	require.NoError(t, srv.Restart())
	// What the archiver does: retry the failed batch, and (not knowing
	// whether the first one was archived) replay that one too.
	require.NoError(t, db.WriteMessages(ctx, during))
	require.NoError(t, db.WriteMessages(ctx, before))
	count, err := db.Count(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1000, count, "every message once")
	got, err := db.Messages(ctx, "c1", 1, 1000, 0)
	require.NoError(t, err)
	require.Len(t, got, 1000)
	for i, m := range got {
		require.EqualValues(t, i+1, m.Seq)
	}
}

// TestDeadline: every call returns within the call timeout when the
// server is down or stops answering.
func TestDeadline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const callTimeout = 500 * time.Millisecond
	// bound leaves room for a busy machine; a call without a deadline
	// would hang until the test binary's own timeout.
	const bound = 10 * callTimeout

	t.Run("open_on_silent_server", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, server.Addr())
		p.freeze()
		cfg := testConfig(server, "default")
		cfg.Addrs = []string{p.addr()}
		cfg.DialTimeout, cfg.CallTimeout = callTimeout, callTimeout
		start := time.Now()
		_, err := clickhouse.Open(ctx, cfg)
		require.ErrorIs(t, err, storage.ErrUnavailable)
		require.Less(t, time.Since(start), bound)
	})

	t.Run("calls_on_server_gone_silent", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, server.Addr())
		name := server.NewDatabase(t)
		cfg := testConfig(server, name)
		cfg.Addrs = []string{p.addr()}
		db := open(t, cfg) // migrations run with the default, longer timeout
		require.NoError(t, db.Close())
		cfg.DialTimeout, cfg.CallTimeout = callTimeout, callTimeout
		db = open(t, cfg)
		p.freeze() // connections stay open; nothing gets through
		start := time.Now()
		err := db.WriteMessages(ctx, testMessages("c1", 1, 10))
		require.ErrorIs(t, err, storage.ErrUnavailable)
		require.Less(t, time.Since(start), bound)
		start = time.Now()
		_, err = db.Messages(ctx, "c1", 1, 10, 0)
		require.ErrorIs(t, err, storage.ErrUnavailable)
		require.Less(t, time.Since(start), bound)
	})

	t.Run("calls_on_stopped_server", func(t *testing.T) {
		t.Parallel()
		srv := realsvc.StartClickHouseTB(t)
		cfg := testConfig(srv, srv.NewDatabase(t))
		cfg.DialTimeout, cfg.CallTimeout = callTimeout, callTimeout
		db := open(t, cfg)
		require.NoError(t, srv.Halt())
		start := time.Now()
		err := db.WriteMessages(ctx, testMessages("c1", 1, 10))
		require.ErrorIs(t, err, storage.ErrUnavailable)
		require.Less(t, time.Since(start), bound)
	})

	t.Run("callers_context_returned_as_is", func(t *testing.T) {
		t.Parallel()
		db, _ := newDB(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		err := db.WriteMessages(cctx, testMessages("c1", 1, 1))
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, storage.ErrUnavailable)
	})
}

// proxy forwards TCP connections to a server until frozen; frozen, it
// keeps accepting and holding connections but passes no byte either way,
// like a server that stopped answering.
type proxy struct {
	l      net.Listener
	target string

	mu     sync.Mutex
	frozen bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{l: l, target: target}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		_ = l.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

// freeze stops forwarding: open connections go silent and new ones are
// accepted but never answered.
func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = true
	for _, c := range p.conns {
		// Unblock the copiers; the client's side stays open.
		if tc, ok := c.(*net.TCPConn); ok && c.RemoteAddr().String() == p.target {
			_ = tc.Close()
		}
	}
}

func (p *proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		frozen := p.frozen
		p.mu.Unlock()
		if frozen {
			continue // held open, never answered
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, s)
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(s, c) })
		p.wg.Go(func() { p.pipe(c, s) })
	}
}

// pipe copies from src to dst until src fails or the proxy freezes;
// frozen, it stops copying without closing the client's side.
func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		frozen := p.frozen
		p.mu.Unlock()
		if frozen {
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				_ = dst.Close()
			}
			return
		}
	}
}
