package main

import (
	"context"
	"crypto/tls"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"github.com/stretchr/testify/require"

	healthv1 "github.com/parley-im/parley/clients/go/gen/grpc/health/v1"
	"github.com/parley-im/parley/clients/go/gen/grpc/health/v1/healthv1connect"
	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/parley"
	"github.com/parley-im/parley/server/tlsfiles/tlsfilestest"
)

// TLS through the environment, as the operator configures it, on the API
// listener: a whole chat over gRPC and Connect streams on HTTP/2, unary
// calls of every protocol on HTTP/2 and HTTP/1.1, and nothing in cleartext
// or below TLS 1.2, while the admin endpoints stay plain HTTP.
func TestTLSServesTheAPI(t *testing.T) {
	t.Parallel()
	ca := tlsfilestest.NewCA(t)
	secret := tlsfilestest.NewSecretDir(t)
	pair := ca.Issue(t, 1)
	secret.Write(t, pair.Cert, pair.Key)
	ts := startTLSServer(t, secret)
	require.True(t, strings.HasPrefix(ts.url, "https://127.0.0.1:"), ts.url)

	t.Run("chat_over_h2", func(t *testing.T) {
		t.Parallel()
		hc := newTLSClient(ca, "h2", "http/1.1")
		defer hc.CloseIdleConnections()
		ctx := t.Context()
		alice, err := parley.Register(ctx, ts.url, "alice", testPassword, parley.WithHTTPClient(hc.Client), parley.WithTransportOptions(connecthttp.WithGRPC()))
		require.NoError(t, err)
		bob, err := parley.Register(ctx, ts.url, "bob", testPassword, parley.WithHTTPClient(hc.Client))
		require.NoError(t, err)
		conv, err := alice.Conversations().CreateDirect(ctx, &parleyv1.CreateDirectRequest{Peer: &parleyv1.CreateDirectRequest_Username{Username: "bob"}})
		require.NoError(t, err)

		// Bidirectional streams need HTTP/2: gRPC for alice, Connect for bob.
		sessCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		as, bs := alice.Connect(sessCtx), bob.Connect(sessCtx)
		defer as.Close()
		defer bs.Close()
		waitEvent(t, as, func(e parley.Event) bool { _, ok := e.(*parley.SyncedEvent); return ok })
		waitEvent(t, bs, func(e parley.Event) bool { _, ok := e.(*parley.SyncedEvent); return ok })
		sent, err := as.Send(ctx, conv.GetConversation().GetId(), parley.Text("over TLS"))
		require.NoError(t, err)
		got := waitEvent(t, bs, func(e parley.Event) bool { _, ok := e.(*parley.MessageEvent); return ok })
		require.Equal(t, sent.GetId(), got.(*parley.MessageEvent).Message.GetId())
		require.Equal(t, "over TLS", got.(*parley.MessageEvent).Message.GetContent().GetText())

		protos, serials := hc.handshakes()
		require.NotEmpty(t, protos)
		for i := range protos {
			require.Equal(t, "h2", protos[i], "offered h2 and http/1.1, the server picks h2")
			require.Equal(t, pair.Serial, serials[i])
		}
	})

	for _, proto := range []string{"h2", "http/1.1"} {
		for name, opts := range map[string][]connecthttp.Option{
			"connect":  nil,
			"grpc":     {connecthttp.WithGRPC()},
			"grpc_web": {connecthttp.WithGRPCWeb()},
		} {
			if proto == "http/1.1" && name == "grpc" {
				continue // gRPC is HTTP/2 only
			}
			t.Run(name+"_unary_over_"+strings.ReplaceAll(proto, "/", ""), func(t *testing.T) {
				t.Parallel()
				hc := newTLSClient(ca, proto)
				defer hc.CloseIdleConnections()
				health := healthv1connect.NewHealthClient(connect.NewClient(connecthttp.NewTransport(hc.Client, ts.url, opts...)))
				res, err := health.Check(t.Context(), &healthv1.HealthCheckRequest{})
				require.NoError(t, err)
				require.Equal(t, healthv1.HealthCheckResponse_SERVING, res.GetStatus())
				protos, _ := hc.handshakes()
				require.Equal(t, []string{proto}, protos)
			})
		}
	}

	t.Run("no_h2c", func(t *testing.T) {
		t.Parallel()
		// Cleartext HTTP/2 with prior knowledge, as h2cClient speaks it.
		hc := h2cClient()
		defer hc.CloseIdleConnections()
		health := healthv1connect.NewHealthClient(connect.NewClient(connecthttp.NewTransport(hc, "http://"+strings.TrimPrefix(ts.url, "https://"))))
		_, err := health.Check(t.Context(), &healthv1.HealthCheckRequest{})
		require.Error(t, err, "the TLS listener answered cleartext HTTP/2")

		// Nor HTTP/2 with prior knowledge inside TLS without ALPN h2.
		conn, err := tls.Dial("tcp", strings.TrimPrefix(ts.url, "https://"), &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12})
		require.NoError(t, err)
		defer conn.Close()
		require.Empty(t, conn.ConnectionState().NegotiatedProtocol)
		_, err = io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		require.NoError(t, err)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
		reply, err := io.ReadAll(conn)
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(string(reply), "HTTP/1.1 400 "), "reply: %q", reply)
	})

	t.Run("no_tls_1_1", func(t *testing.T) {
		t.Parallel()
		_, err := tls.Dial("tcp", strings.TrimPrefix(ts.url, "https://"), &tls.Config{
			RootCAs:    ca.Pool(),
			MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11, //nolint:gosec // the point of the test
		})
		require.ErrorContains(t, err, "protocol version")
	})

	t.Run("admin_stays_plain_http", func(t *testing.T) {
		t.Parallel()
		require.True(t, strings.HasPrefix(ts.adminURL, "http://"), ts.adminURL)
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.adminURL+"/readyz", http.NoBody)
		require.NoError(t, err)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		require.NoError(t, res.Body.Close())
		require.Equal(t, http.StatusOK, res.StatusCode)
	})
}

// Replacing the mounted Secret, as cert-manager and the kubelet do, changes
// the certificate of new handshakes without a restart; a replacement that
// does not load leaves the last good certificate in place.
func TestTLSCertificateRotation(t *testing.T) {
	t.Parallel()
	ca := tlsfilestest.NewCA(t)
	secret := tlsfilestest.NewSecretDir(t)
	first, second, third := ca.Issue(t, 1), ca.Issue(t, 2), ca.Issue(t, 3)
	secret.Write(t, first.Cert, first.Key)
	ts := startTLSServer(t, secret)

	// Each call on a client of its own: a new connection, a new handshake.
	requireServed := func(t *testing.T, want *big.Int) {
		t.Helper()
		hc := newTLSClient(ca, "h2")
		defer hc.CloseIdleConnections()
		health := healthv1connect.NewHealthClient(connect.NewClient(connecthttp.NewTransport(hc.Client, ts.url, connecthttp.WithGRPC())))
		_, err := health.Check(t.Context(), &healthv1.HealthCheckRequest{})
		require.NoError(t, err)
		_, serials := hc.handshakes()
		require.Equal(t, []*big.Int{want}, serials)
	}
	requireServed(t, first.Serial)

	// A connection made before the rotation goes on working.
	before := newTLSClient(ca, "h2")
	defer before.CloseIdleConnections()
	beforeHealth := healthv1connect.NewHealthClient(connect.NewClient(connecthttp.NewTransport(before.Client, ts.url, connecthttp.WithGRPC())))
	_, err := beforeHealth.Check(t.Context(), &healthv1.HealthCheckRequest{})
	require.NoError(t, err)

	secret.Write(t, second.Cert, second.Key)
	requireServed(t, second.Serial)
	_, err = beforeHealth.Check(t.Context(), &healthv1.HealthCheckRequest{})
	require.NoError(t, err)
	_, serials := before.handshakes()
	require.Equal(t, []*big.Int{first.Serial}, serials, "the old connection was kept, not redialled")

	// The key of another certificate: parleyd keeps the second pair.
	secret.Write(t, third.Cert, first.Key)
	requireServed(t, second.Serial)
	requireServed(t, second.Serial)

	secret.Write(t, third.Cert, third.Key)
	requireServed(t, third.Serial)
}

// A key pair that does not load fails the start, naming the file; half a
// pair is a configuration error naming the missing setting.
func TestTLSBadConfigFailsStart(t *testing.T) {
	t.Parallel()
	ca := tlsfilestest.NewCA(t)
	a, b := ca.Issue(t, 1), ca.Issue(t, 2)
	mismatched := tlsfilestest.NewSecretDir(t)
	mismatched.Write(t, a.Cert, b.Key)
	good := tlsfilestest.NewSecretDir(t)
	good.Write(t, a.Cert, a.Key)
	missing := t.TempDir() + "/tls.key"

	tests := []struct {
		name     string
		env      map[string]string
		wantErrs []string
	}{
		{name: "key_of_another_certificate", env: map[string]string{"PARLEY_TLS_CERT_FILE": mismatched.CertFile(), "PARLEY_TLS_KEY_FILE": mismatched.KeyFile()}, wantErrs: []string{mismatched.CertFile(), mismatched.KeyFile(), "does not match"}},
		{name: "missing_key_file", env: map[string]string{"PARLEY_TLS_CERT_FILE": good.CertFile(), "PARLEY_TLS_KEY_FILE": missing}, wantErrs: []string{"key_file", missing}},
		{name: "cert_without_key", env: map[string]string{"PARLEY_TLS_CERT_FILE": good.CertFile()}, wantErrs: []string{"tls: key_file is not set"}},
		{name: "key_without_cert", env: map[string]string{"PARLEY_TLS_KEY_FILE": good.KeyFile()}, wantErrs: []string{"tls: cert_file is not set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := []string{"-listen", "127.0.0.1:0", "-admin-listen", "", "-data-dir", t.TempDir()}
			err := run(t.Context(), args, func(k string) string { return tt.env[k] }, io.Discard, io.Discard)
			require.Error(t, err)
			for _, want := range tt.wantErrs {
				require.ErrorContains(t, err, want)
			}
		})
	}
}

// startTLSServer is startServerEnv with the API on TLS from secret's files,
// named through the environment.
func startTLSServer(tb testing.TB, secret *tlsfilestest.SecretDir, args ...string) *testServer {
	tb.Helper()
	ts := startServerEnv(tb, map[string]string{"PARLEY_TLS_CERT_FILE": secret.CertFile(), "PARLEY_TLS_KEY_FILE": secret.KeyFile()}, args...)
	require.True(tb, strings.HasPrefix(ts.url, "https://"), "server reported %s, want an https address", ts.url)
	return ts
}

// tlsClient is an HTTP client over TLS that trusts only the test CA,
// offers protos by ALPN, and records each handshake.
type tlsClient struct {
	*http.Client
	mu      sync.Mutex
	protos  []string
	serials []*big.Int
}

func newTLSClient(ca *tlsfilestest.CA, protos ...string) *tlsClient {
	c := &tlsClient{}
	p := new(http.Protocols)
	var nextProtos []string
	for _, proto := range protos {
		switch proto {
		case "h2":
			p.SetHTTP2(true)
		case "http/1.1":
			p.SetHTTP1(true)
		}
	}
	if !p.HTTP2() {
		// The transport offers ALPN only with h2; browsers and curl
		// offer http/1.1 by itself.
		nextProtos = []string{"http/1.1"}
	}
	c.Client = &http.Client{Transport: &http.Transport{
		Protocols: p,
		TLSClientConfig: &tls.Config{
			RootCAs:    ca.Pool(),
			MinVersion: tls.VersionTLS12,
			NextProtos: nextProtos,
			VerifyConnection: func(cs tls.ConnectionState) error {
				c.mu.Lock()
				defer c.mu.Unlock()
				c.protos = append(c.protos, cs.NegotiatedProtocol)
				c.serials = append(c.serials, cs.PeerCertificates[0].SerialNumber)
				return nil
			},
		},
	}}
	return c
}

// handshakes returns each handshake's negotiated protocol and server
// certificate serial so far.
func (c *tlsClient) handshakes() ([]string, []*big.Int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.protos...), append([]*big.Int(nil), c.serials...)
}

// waitEvent returns the first event of s that satisfies want.
func waitEvent(tb testing.TB, s *parley.Session, want func(parley.Event) bool) parley.Event {
	tb.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case e, ok := <-s.Events():
			require.True(tb, ok, "session ended: %v", s.Err())
			if d, isDisc := e.(*parley.DisconnectedEvent); isDisc {
				tb.Logf("disconnected: %v", d.Err)
			}
			if want(e) {
				return e
			}
		case <-timeout:
			tb.Fatal("no such event within 30s")
		}
	}
}
