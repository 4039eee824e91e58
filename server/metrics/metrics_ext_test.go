package metrics_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectinprocess"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
	"github.com/parley-im/parley/server/metrics"
	"github.com/parley-im/parley/storage"
)

// Components built without metrics hold nil parts: every method must be a
// no-op there.
func TestNilIsANoOp(t *testing.T) {
	t.Parallel()
	var m metrics.Metrics
	m.HTTP.ConnState(nil, http.StateNew)
	m.Stream.Opened(metrics.ProcConnect, "grpc")
	m.Stream.Closed(metrics.ProcConnect, "grpc", metrics.ReasonSlowConsumer)
	m.Stream.Resync(metrics.ReasonShutdown)
	m.Stream.SendError(connect.CodeInternal)
	m.Hub.DeviceAdded()
	m.Hub.DeviceRemoved()
	m.Hub.Enqueued(3, true, true)
	m.Hub.Handed(time.Now(), time.Now())
	m.Engine.Committed(4, 3, 1, false)
	m.Engine.Acked()
	m.Engine.CatchUp()
	m.Engine.Gap()
	m.Engine.Repair(true, true)
	m.Route.Published(2, time.Millisecond, true)
	m.Route.Skipped()
	m.Route.Consumed(metrics.EntryLost)
	m.Route.PresenceFailed(metrics.PresenceOnline)
	m.Route.RefreshFailed(3)
	m.RateLimit.Rejected(metrics.LimitSend)
	st := storeStub{}
	require.Equal(t, storage.Store(st), metrics.InstrumentStore(st, m.Store))
	next := connect.ServerFunc(func(context.Context, connect.Spec, connect.ServerStream) error { return nil })
	require.NoError(t, m.RPC.Interceptor()(next)(t.Context(), connect.Spec{}, nil))
}

func TestNewRegistersOnce(t *testing.T) {
	t.Parallel()
	reg := metrics.NewRegistry()
	_, err := metrics.New(reg)
	require.NoError(t, err)
	_, err = metrics.New(reg)
	require.Error(t, err, "a second set of the same names")

	fams, err := reg.Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, f := range fams {
		names[f.GetName()] = true
	}
	for _, n := range []string{"go_goroutines", "process_resident_memory_bytes", "parley_build_info", "parley_stream_open", "parley_store_op_duration_seconds"} {
		require.True(t, names[n], n)
	}
}

// Labelled series exist at zero before their first event, so that rates
// and alerts work from the first scrape.
func TestSeriesExistBeforeEvents(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	_, err := metrics.New(reg)
	require.NoError(t, err)
	for name, series := range map[string]int{
		"parley_stream_disconnects_total":     7,
		"parley_stream_resyncs_total":         7,
		"parley_messages_send_errors_total":   16,
		"parley_ratelimit_rejections_total":   3,
		"parley_store_op_errors_total":        32,
		"parley_route_entries_consumed_total": 6,
		"parley_stream_open":                  8,
	} {
		n, err := testutil.GatherAndCount(reg, name)
		require.NoError(t, err)
		require.Equal(t, series, n, name)
	}
}

func TestStoreCountsFailuresNotAnswers(t *testing.T) {
	t.Parallel()
	m, err := metrics.New(prometheus.NewRegistry())
	require.NoError(t, err)
	st := metrics.InstrumentStore(storeStub{}, m.Store)

	_, err = st.GetUser(t.Context(), "missing") // ErrNotFound: an answer
	require.ErrorIs(t, err, storage.ErrNotFound)
	_, err = st.Epoch(t.Context()) // ErrUnavailable: a failure
	require.ErrorIs(t, err, storage.ErrUnavailable)
	_, err = st.GetUsers(t.Context(), nil)
	require.NoError(t, err)

	count := func(op string) int { return int(testutil.ToFloat64(m.Store.ErrorsFor(op))) }
	require.Equal(t, 0, count("get_user"))
	require.Equal(t, 1, count("epoch"))
	require.Equal(t, 0, count("get_users"))
}

type locator struct {
	parleyv1connect.UnimplementedClusterServiceHandler
}

func (locator) Locate(_ context.Context, req *parleyv1.LocateRequest) (*parleyv1.LocateResponse, error) {
	if req.GetUserId() == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, "user_id")
	}
	return &parleyv1.LocateResponse{}, nil
}

func TestRPCInterceptorCountsByProcedureAndCode(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	require.NoError(t, err)
	srv := connect.NewServer(m.RPC.Interceptor())
	parleyv1connect.RegisterClusterServiceHandler(srv, locator{})
	client := parleyv1connect.NewClusterServiceClient(connect.NewClient(connectinprocess.New(srv)))
	for range 3 {
		_, err := client.Locate(t.Context(), &parleyv1.LocateRequest{UserId: "u"})
		require.NoError(t, err)
	}
	_, err = client.Locate(t.Context(), &parleyv1.LocateRequest{})
	require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err))

	const proc = parleyv1connect.ClusterServiceLocateProcedure
	require.InDelta(t, 3, testutil.ToFloat64(m.RPC.HandledFor(proc, connect.Code(0))), 0)
	require.InDelta(t, 1, testutil.ToFloat64(m.RPC.HandledFor(proc, connect.CodeInvalidArgument)), 0)
	n, err := testutil.GatherAndCount(reg, "parley_rpc_duration_seconds")
	require.NoError(t, err)
	require.Equal(t, 1, n, "one histogram per unary procedure")
}

// storeStub answers GetUser with ErrNotFound, Epoch with ErrUnavailable
// and GetUsers with nothing.
type storeStub struct{ storage.Store }

func (storeStub) GetUser(context.Context, string) (storage.User, error) {
	return storage.User{}, storage.ErrNotFound
}

func (storeStub) Epoch(context.Context) (string, error) {
	return "", errors.Join(errors.New("dial tcp: refused"), storage.ErrUnavailable)
}

func (storeStub) GetUsers(context.Context, []string) ([]storage.User, error) { return nil, nil }
