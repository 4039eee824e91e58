package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
)

const (
	dashboardPath = "../../../config/grafana/parley.json"
	alertsPath    = "../../../config/prometheus/alerts.yml"
)

// metricRef is a metric name as it appears in PromQL.
var metricRef = regexp.MustCompile(`\b(?:parley|go|process)_[A-Za-z0-9_]+`)

// chat makes a little traffic: two users in a direct conversation, both
// on Connect streams, one message from alice delivered to bob and acked.
func chat(t *testing.T, url string) {
	t.Helper()
	hc := h2cClient()
	defer hc.CloseIdleConnections()
	alice := register(t, hc, url, "alice")
	bob := register(t, hc, url, "bob")
	conv, err := alice.convs.CreateDirect(t.Context(), &parleyv1.CreateDirectRequest{Peer: &parleyv1.CreateDirectRequest_UserId{UserId: bob.id}})
	require.NoError(t, err)
	cid := conv.GetConversation().GetId()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	bs, err := bob.chat.Connect(ctx)
	require.NoError(t, err)
	require.NoError(t, bs.SendHeaders())
	recv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetSyncComplete() != nil })
	as, err := alice.chat.Connect(ctx)
	require.NoError(t, err)
	require.NoError(t, as.SendHeaders())
	recv(t, as, func(f *parleyv1.ServerFrame) bool { return f.GetSyncComplete() != nil })

	require.NoError(t, as.Send(&parleyv1.ConnectRequest{Frame: &parleyv1.ClientFrame{Kind: &parleyv1.ClientFrame_Send{Send: &parleyv1.SendFrame{
		ConversationId: cid, ClientMsgId: "m1", Content: &parleyv1.Content{Body: &parleyv1.Content_Text{Text: "observed"}},
	}}}}))
	recv(t, as, func(f *parleyv1.ServerFrame) bool { return f.GetSendAck() != nil })
	m := recv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetMessage() != nil }).GetMessage()
	require.NoError(t, bs.Send(&parleyv1.ConnectRequest{Frame: &parleyv1.ClientFrame{Kind: &parleyv1.ClientFrame_Ack{Ack: &parleyv1.AckFrame{ConversationId: cid, Seq: m.GetSeq()}}}}))
	// A ping answered means the ack before it was handled.
	require.NoError(t, bs.Send(&parleyv1.ConnectRequest{Frame: &parleyv1.ClientFrame{Kind: &parleyv1.ClientFrame_Ping{Ping: &parleyv1.PingFrame{Nonce: 1}}}}))
	recv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetPong().GetNonce() == 1 })
}

// get fetches url and returns its status and body.
func get(t *testing.T, hc *http.Client, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, http.NoBody)
	require.NoError(t, err)
	res, err := hc.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(body)
}

// scrape returns the metric families a Prometheus text exposition
// declares (name -> type) and its samples (series -> value).
func scrape(t *testing.T, url string) (types map[string]string, samples map[string]float64) {
	t.Helper()
	code, body := get(t, http.DefaultClient, url+"/metrics")
	require.Equal(t, http.StatusOK, code, body)
	types, samples = map[string]string{}, map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = f[3]
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		samples[line[:i]] = v
	}
	return types, samples
}

// dashboardQueries returns every PromQL expression of the Grafana
// dashboard: panel targets and template variable queries.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(dashboardPath)
	require.NoError(t, err)
	var dash any
	require.NoError(t, json.Unmarshal(data, &dash))
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "query" || k == "definition") {
					exprs = append(exprs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(dash)
	return exprs
}

// alertQueries returns the expression of every alerting rule.
func alertQueries(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(alertsPath)
	require.NoError(t, err)
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(data, &rules))
	var exprs []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert, "group %s: a rule without a name", g.Name)
			require.NotEmpty(t, r.Expr, "alert %s has no expr", r.Alert)
			exprs = append(exprs, r.Expr)
		}
	}
	return exprs
}

// Every metric the Grafana dashboard and the alert rules query exists on a
// running server that has seen a little traffic.
func TestDashboardAndAlertMetricsExist(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	require.NotEmpty(t, ts.adminURL)
	chat(t, ts.url)
	types, samples := scrape(t, ts.adminURL)

	dash, alerts := dashboardQueries(t), alertQueries(t)
	require.GreaterOrEqual(t, len(dash), 20, "the dashboard has too few queries; did its layout change?")
	require.GreaterOrEqual(t, len(alerts), 8)
	for file, exprs := range map[string][]string{filepath.Base(dashboardPath): dash, filepath.Base(alertsPath): alerts} {
		names := map[string]bool{}
		for _, e := range exprs {
			for _, n := range metricRef.FindAllString(e, -1) {
				names[n] = true
			}
		}
		require.NotEmpty(t, names, file)
		for _, n := range slices.Sorted(maps.Keys(names)) {
			require.Truef(t, exists(types, n), "%s queries %s, which the server does not export", file, n)
		}
	}

	// The traffic shows up.
	for series, atLeast := range map[string]float64{
		`parley_messages_sent_total`:                                                      1,
		`parley_messages_acknowledged_total`:                                              1,
		`parley_messages_delivery_latency_seconds_count`:                                  1,
		`parley_stream_open{procedure="connect",protocol="connect"}`:                      2,
		`parley_stream_opened_total{procedure="connect",protocol="connect"}`:              2,
		`parley_hub_devices`:                                                              2,
		`parley_http_connections`:                                                         1,
		`parley_engine_commit_batch_messages_count`:                                       1,
		`parley_engine_catchups_total`:                                                    2,
		`parley_store_op_duration_seconds_count{op="append_messages"}`:                    1,
		`parley_rpc_handled_total{code="ok",procedure="/parley.v1.AuthService/Register"}`: 2,
		`parley_ready`:                  1,
		`go_goroutines`:                 1,
		`process_resident_memory_bytes`: 1,
	} {
		require.GreaterOrEqualf(t, samples[series], atLeast, "%s (scraped: %v)", series, sampleNames(samples))
	}
	// Bob's copy is usually live, but a loaded machine can have it held
	// and repaired from the store (path="backlog"): either way, counted.
	require.GreaterOrEqual(t, samples[`parley_messages_delivered_total{path="live"}`]+samples[`parley_messages_delivered_total{path="backlog"}`], 1.0,
		"delivered_total (scraped: %v)", sampleNames(samples))
	require.Contains(t, strings.Join(sampleNames(samples), "\n"), `parley_build_info{goversion="go`)
	for series := range samples {
		for _, id := range []string{"alice", "bob"} {
			require.NotContains(t, series, id, "a label carries a user")
		}
	}
}

// exists says whether name is an exported family, or a histogram's
// _bucket, _sum or _count series.
func exists(types map[string]string, name string) bool {
	if _, ok := types[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && (types[base] == "histogram" || (suffix != "_bucket" && types[base] == "summary")) {
			return true
		}
	}
	return false
}

func sampleNames(samples map[string]float64) []string {
	names := make([]string, 0, len(samples))
	for n := range samples {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// The admin listener serves pprof, liveness and readiness; the public one
// serves none of the admin endpoints.
func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	require.NotEmpty(t, ts.adminURL)
	require.NotEqual(t, ts.url, ts.adminURL)

	for path, want := range map[string]string{
		"/healthz":                       "ok",
		"/readyz":                        "ready",
		"/debug/pprof/":                  "goroutine",
		"/debug/pprof/goroutine?debug=1": "goroutine profile",
		"/debug/pprof/cmdline":           "",
		"/debug/pprof/heap?debug=1":      "heap profile",
		"/metrics":                       "go_goroutines",
	} {
		code, body := get(t, http.DefaultClient, ts.adminURL+path)
		require.Equal(t, http.StatusOK, code, path)
		require.Contains(t, body, want, path)
	}

	hc := h2cClient()
	defer hc.CloseIdleConnections()
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline", "/healthz", "/readyz"} {
		code, body := get(t, hc, ts.url+path)
		require.NotEqual(t, http.StatusOK, code, "public listener serves %s", path)
		require.NotContains(t, body, "go_goroutines", path)
		require.NotContains(t, body, "goroutine profile", path)
	}
}

func TestAdminListenerCanBeDisabled(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "-admin-listen", "")
	require.Empty(t, ts.adminURL)
}

func TestReadiness(t *testing.T) {
	t.Parallel()
	var r readiness
	require.ErrorContains(t, r.ready(t.Context()), "starting")
	storeDown := errors.New("store unreachable")
	var failing bool
	r.serving(func(context.Context) error {
		if failing {
			return storeDown
		}
		return nil
	})
	require.NoError(t, r.ready(t.Context()))
	failing = true
	require.ErrorIs(t, r.ready(t.Context()), storeDown)
	failing = false
	r.stopping()
	require.ErrorContains(t, r.ready(t.Context()), "shutting down", "not ready while shutting down, whatever the checks say")
}

// lockedBuffer is an io.Writer safe for the server's concurrent logging.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// With -log-format json every log line is a JSON object, and at debug
// level no line carries a password, a token or a message body.
func TestJSONLogsCarryNoSecrets(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var logs lockedBuffer
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	args := []string{"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-data-dir", t.TempDir(), "-log-level", "debug", "-log-format", "json"}
	go func() {
		err := run(ctx, args, func(string) string { return "" }, pw, &logs)
		pw.CloseWithError(fmt.Errorf("run returned: %w", err))
		done <- err
	}()
	var url string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
			url = m[1]
			break
		}
	}
	require.NotEmpty(t, url, sc.Err())
	go func() { _, _ = io.Copy(io.Discard, pr) }()

	hc := h2cClient()
	defer hc.CloseIdleConnections()
	alice := register(t, hc, url, "alice")
	bob := register(t, hc, url, "bob")
	conv, err := alice.convs.CreateDirect(t.Context(), &parleyv1.CreateDirectRequest{Peer: &parleyv1.CreateDirectRequest_UserId{UserId: bob.id}})
	require.NoError(t, err)
	const body = "a-secret-message-body"
	_, err = alice.chat.SendMessage(t.Context(), &parleyv1.SendMessageRequest{
		ConversationId: conv.GetConversation().GetId(), ClientMsgId: "s1",
		Content: &parleyv1.Content{Body: &parleyv1.Content_Text{Text: body}},
	})
	require.NoError(t, err)
	// A refused login is not logged with what was tried.
	authc := parleyv1connect.NewAuthServiceClient(connect.NewClient(connecthttp.NewTransport(hc, url)))
	_, err = authc.Login(t.Context(), &parleyv1.LoginRequest{Username: "alice", Password: "wrong-password"})
	require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err))
	cancel()
	require.NoError(t, <-done)

	out := logs.String()
	require.Contains(t, out, `"msg":"parleyd ready"`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, line := range lines {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "not a JSON log line: %s", line)
		require.Contains(t, rec, "level", line)
		require.Contains(t, rec, "msg", line)
	}
	for _, secret := range []string{testPassword, "wrong-password", alice.token, bob.token, body} {
		require.NotContains(t, out, secret)
	}
}
