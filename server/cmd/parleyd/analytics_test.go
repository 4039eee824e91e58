package main

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
	"github.com/parley-im/parley/storage/analytics"
	"github.com/parley-im/parley/storage/embedded"
	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// adminOf is an AdminService client calling with u's token.
func adminOf(hc *http.Client, url string, u *user) parleyv1connect.AdminServiceClient {
	return parleyv1connect.NewAdminServiceClient(connect.NewClient(connecthttp.NewTransport(hc, url), bearer(u.token)))
}

// lastHour is [now-1h, now+1h).
func lastHour() *parleyv1.TimeRange {
	now := time.Now()
	return &parleyv1.TimeRange{From: timestamppb.New(now.Add(-time.Hour)), To: timestamppb.New(now.Add(time.Hour))}
}

// A PostgreSQL store without ClickHouse has no analytics: admins are told
// what to configure, others are still refused first.
func TestAnalyticsPostgresNeedsClickHouse(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "-store", postgresDSN(t))
	hc := h2cClient()
	alice := register(t, hc, ts.url, "alice")
	bob := register(t, hc, ts.url, "bob")

	_, err := adminOf(hc, ts.url, alice).GetLatency(t.Context(), &parleyv1.GetLatencyRequest{Range: lastHour()})
	require.Equal(t, connect.CodeFailedPrecondition, connect.CodeOf(err), "%v", err)
	require.ErrorContains(t, err, "analytics needs ClickHouse (analytics.clickhouse)")

	_, err = adminOf(hc, ts.url, bob).GetLatency(t.Context(), &parleyv1.GetLatencyRequest{Range: lastHour()})
	require.Equal(t, connect.CodePermissionDenied, connect.CodeOf(err), "%v", err)
}

// With analytics.clickhouse set (or, without it, an enabled archive's
// clickhouse), parleyd writes its events to ClickHouse through the
// EventWriter and answers the AdminService from there; the writer's
// counters are on /metrics.
func TestAnalyticsClickHouse(t *testing.T) {
	t.Parallel()
	ch := realsvc.StartClickHouseTB(t)
	for _, prefix := range []string{"PARLEY_ANALYTICS_CLICKHOUSE_", "PARLEY_ARCHIVE_CLICKHOUSE_"} {
		t.Run(strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(prefix, "PARLEY_"), "_")), func(t *testing.T) {
			t.Parallel()
			testAnalyticsClickHouse(t, map[string]string{
				"PARLEY_ARCHIVE_ENABLED":                      "true",
				prefix + "ADDRS":                              ch.Addr(),
				prefix + "DATABASE":                           ch.NewDatabase(t),
				prefix + "CALL_TIMEOUT":                       "20s",
				"PARLEY_ANALYTICS_WRITER_FLUSH_INTERVAL":      "10ms",
				"PARLEY_ANALYTICS_WRITER_FINAL_FLUSH_TIMEOUT": "20s",
			})
		})
	}
}

func testAnalyticsClickHouse(t *testing.T, env map[string]string) {
	if env["PARLEY_ARCHIVE_CLICKHOUSE_ADDRS"] == "" {
		// The archive needs its own ClickHouse; analytics is tested alone.
		delete(env, "PARLEY_ARCHIVE_ENABLED")
	}
	ts := startServerEnv(t, env)
	hc := h2cClient()
	alice := register(t, hc, ts.url, "alice")
	bob := register(t, hc, ts.url, "bob")
	conv, err := alice.convs.CreateDirect(t.Context(), &parleyv1.CreateDirectRequest{Peer: &parleyv1.CreateDirectRequest_UserId{UserId: bob.id}})
	require.NoError(t, err)
	cid := conv.GetConversation().GetId()

	bs, err := bob.chat.Connect(t.Context())
	require.NoError(t, err)
	require.NoError(t, bs.SendHeaders())
	recv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetSyncComplete() != nil })
	for i, body := range []string{"one", "two"} {
		_, err := alice.chat.SendMessage(t.Context(), &parleyv1.SendMessageRequest{
			ConversationId: cid, ClientMsgId: "ch-" + body, Content: &parleyv1.Content{Body: &parleyv1.Content_Text{Text: body}},
		})
		require.NoError(t, err, "send %d", i)
		recv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetMessage().GetContent().GetText() == body })
	}
	require.NoError(t, bs.CloseSend())

	admin := adminOf(hc, ts.url, alice)
	require.Eventually(t, func() bool {
		res, err := admin.GetConnections(t.Context(), &parleyv1.GetConnectionsRequest{Range: lastHour(), Bucket: parleyv1.TimeBucket_TIME_BUCKET_DAY})
		if connect.CodeOf(err) == connect.CodeUnavailable {
			return false // ClickHouse is opened in the background
		}
		require.NoError(t, err)
		var closed uint64
		for _, b := range res.GetBuckets() {
			closed += b.GetClosed()
		}
		return closed == 1
	}, 30*time.Second, 10*time.Millisecond)

	vol, err := admin.GetBusiestConversations(t.Context(), &parleyv1.GetBusiestConversationsRequest{Range: lastHour(), Limit: 5})
	require.NoError(t, err)
	require.Len(t, vol.GetConversations(), 1)
	require.Equal(t, cid, vol.GetConversations()[0].GetConversationId())
	require.EqualValues(t, 2, vol.GetConversations()[0].GetMessages())
	volume, err := admin.GetMessageVolume(t.Context(), &parleyv1.GetMessageVolumeRequest{Range: lastHour(), Bucket: parleyv1.TimeBucket_TIME_BUCKET_HOUR})
	require.NoError(t, err)
	var sent uint64
	for _, b := range volume.GetBuckets() {
		require.Zero(t, b.GetStart().AsTime().Minute(), "hour buckets start on the hour")
		sent += b.GetCount()
	}
	require.EqualValues(t, 2, sent)
	active, err := admin.GetActiveUsers(t.Context(), &parleyv1.GetActiveUsersRequest{Range: lastHour(), Period: parleyv1.ActivePeriod_ACTIVE_PERIOD_MONTH})
	require.NoError(t, err)
	var most uint64
	for _, p := range active.GetPeriods() {
		require.Equal(t, 1, p.GetStart().AsTime().Day(), "months start on the 1st")
		most = max(most, p.GetUsers())
	}
	require.EqualValues(t, 2, most, "alice sent, bob connected")
	lat, err := admin.GetLatency(t.Context(), &parleyv1.GetLatencyRequest{Range: lastHour()})
	require.NoError(t, err)
	require.EqualValues(t, 2, lat.GetDeliver().GetCount())
	require.Nil(t, lat.GetRead())

	types, samples := scrape(t, ts.adminURL)
	require.Equal(t, "counter", types["parley_analytics_events_written_total"])
	require.Equal(t, "gauge", types["parley_analytics_events_buffered"])
	// 2 sent, 2 delivered, 1 opened, 1 closed.
	require.InDelta(t, 6, samples["parley_analytics_events_written_total"], 0)
	require.Zero(t, samples["parley_analytics_events_dropped_total"])
}

// With analytics.retention, parleyd removes older events: events written
// two hours back are gone from the AdminService's answers once it runs,
// while the message sent now is counted.
func TestAnalyticsRetention(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	old := time.Now().Add(-2 * time.Hour)
	s, err := embedded.Open(t.Context(), embedded.Config{Path: filepath.Join(dir, "parley.db")})
	require.NoError(t, err)
	require.NoError(t, s.WriteEvents(t.Context(), []analytics.Event{
		{ID: uuid.New(), Kind: analytics.EventMessageSent, At: old, UserID: "someone", ConversationID: "c", Seq: 1, Node: "n"},
	}))
	require.NoError(t, s.Close())

	ts := startServerEnv(t, map[string]string{"PARLEY_ANALYTICS_RETENTION": "1h"}, "-data-dir", dir)
	hc := h2cClient()
	alice := register(t, hc, ts.url, "alice")
	bob := register(t, hc, ts.url, "bob")
	say(t, alice, direct(t, alice, bob), "1", "now")
	admin := adminOf(hc, ts.url, alice)
	window := &parleyv1.TimeRange{From: timestamppb.New(old.Add(-time.Hour)), To: timestamppb.New(time.Now().Add(time.Hour))}
	require.Eventually(t, func() bool {
		res, err := admin.GetMessageVolume(context.Background(), &parleyv1.GetMessageVolumeRequest{Range: window, Bucket: parleyv1.TimeBucket_TIME_BUCKET_DAY})
		if err != nil {
			return false
		}
		total := uint64(0)
		for _, c := range res.GetBuckets() {
			total += c.GetCount()
		}
		return total == 1
	}, 30*time.Second, 20*time.Millisecond, "the old event is pruned and the new one recorded")
}
