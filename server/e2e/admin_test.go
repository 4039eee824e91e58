package e2e_test

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
	"github.com/parley-im/parley/server/testserver"
)

// startAnalytics starts parleyd (embedded store) with carol as a
// configured admin, writing analytics events every 10 ms.
func startAnalytics(t *testing.T) (*testserver.Server, parleyv1connect.AdminServiceClient) {
	t.Helper()
	p := testserver.Start(t, testserver.WithEnv(
		"PARLEY_ADMIN_USERS=nobody, Carol",
		"PARLEY_ANALYTICS_WRITER_FLUSH_INTERVAL=10ms",
	))
	return p, parleyv1connect.NewAdminServiceClient(p.Client(t))
}

// as is a context whose calls carry u's access token (nil u: none).
func as(t *testing.T, u *user) context.Context {
	if u == nil {
		return withBearer(t.Context(), "")
	}
	return withBearer(t.Context(), u.client().Credentials().AccessToken)
}

// around is a range from an hour before now to an hour after.
func around() *parleyv1.TimeRange {
	now := time.Now()
	return &parleyv1.TimeRange{From: timestamppb.New(now.Add(-time.Hour)), To: timestamppb.New(now.Add(time.Hour))}
}

// TestAdminAuthorization: the first registered user and the configured
// usernames are admins; everyone else is refused: without a token
// Unauthenticated, with one PermissionDenied. Bad requests are
// InvalidArgument naming the field.
func TestAdminAuthorization(t *testing.T) {
	t.Parallel()
	p, admin := startAnalytics(t)
	alice := newUser(t, p.URL(), "alice", 1) // first: admin
	bob := newUser(t, p.URL(), "bob", 1)
	carol := newUser(t, p.URL(), "carol", 1) // configured ("Carol")
	volume := func(ctx context.Context) error {
		_, err := admin.GetMessageVolume(ctx, &parleyv1.GetMessageVolumeRequest{Range: around(), Bucket: parleyv1.TimeBucket_TIME_BUCKET_HOUR})
		return err
	}

	t.Run("first_user", func(t *testing.T) { require.NoError(t, volume(as(t, alice))) })
	t.Run("configured_user", func(t *testing.T) { require.NoError(t, volume(as(t, carol))) })
	t.Run("other_user", func(t *testing.T) {
		err := volume(as(t, bob))
		require.Equal(t, connect.CodePermissionDenied, connect.CodeOf(err), "%v", err)
		require.ErrorContains(t, err, "admin only")
	})
	t.Run("no_token", func(t *testing.T) {
		err := volume(as(t, nil))
		require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err), "%v", err)
	})
	t.Run("every_procedure_is_guarded", func(t *testing.T) {
		ctx := as(t, bob)
		_, err := admin.GetActiveUsers(ctx, &parleyv1.GetActiveUsersRequest{Range: around(), Period: parleyv1.ActivePeriod_ACTIVE_PERIOD_DAY})
		require.Equal(t, connect.CodePermissionDenied, connect.CodeOf(err), "%v", err)
		_, err = admin.GetLatency(ctx, &parleyv1.GetLatencyRequest{Range: around()})
		require.Equal(t, connect.CodePermissionDenied, connect.CodeOf(err), "%v", err)
		_, err = admin.GetBusiestConversations(ctx, &parleyv1.GetBusiestConversationsRequest{Range: around(), Limit: 5})
		require.Equal(t, connect.CodePermissionDenied, connect.CodeOf(err), "%v", err)
		_, err = admin.GetConnections(ctx, &parleyv1.GetConnectionsRequest{Range: around(), Bucket: parleyv1.TimeBucket_TIME_BUCKET_HOUR})
		require.Equal(t, connect.CodePermissionDenied, connect.CodeOf(err), "%v", err)
	})

	t.Run("validation_names_the_field", func(t *testing.T) {
		now := time.Now()
		ts := timestamppb.New
		for _, tc := range []struct {
			name string
			call func(ctx context.Context) error
			want string
		}{
			{"no_range", func(ctx context.Context) error {
				_, err := admin.GetLatency(ctx, &parleyv1.GetLatencyRequest{})
				return err
			}, "range"},
			{"no_from", func(ctx context.Context) error {
				_, err := admin.GetLatency(ctx, &parleyv1.GetLatencyRequest{Range: &parleyv1.TimeRange{To: ts(now)}})
				return err
			}, "range.from"},
			{"from_not_before_to", func(ctx context.Context) error {
				_, err := admin.GetLatency(ctx, &parleyv1.GetLatencyRequest{Range: &parleyv1.TimeRange{From: ts(now), To: ts(now)}})
				return err
			}, "from must be before to"},
			{"span_over_400_days", func(ctx context.Context) error {
				_, err := admin.GetLatency(ctx, &parleyv1.GetLatencyRequest{Range: &parleyv1.TimeRange{From: ts(now.AddDate(0, 0, -401)), To: ts(now)}})
				return err
			}, "at most 400 days"},
			{"no_bucket", func(ctx context.Context) error {
				_, err := admin.GetMessageVolume(ctx, &parleyv1.GetMessageVolumeRequest{Range: around()})
				return err
			}, "bucket"},
			{"no_period", func(ctx context.Context) error {
				_, err := admin.GetActiveUsers(ctx, &parleyv1.GetActiveUsersRequest{Range: around()})
				return err
			}, "period"},
			{"limit_zero", func(ctx context.Context) error {
				_, err := admin.GetBusiestConversations(ctx, &parleyv1.GetBusiestConversationsRequest{Range: around()})
				return err
			}, "limit"},
			{"limit_over_100", func(ctx context.Context) error {
				_, err := admin.GetBusiestConversations(ctx, &parleyv1.GetBusiestConversationsRequest{Range: around(), Limit: 101})
				return err
			}, "limit"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := tc.call(as(t, alice))
				require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "%v", err)
				require.ErrorContains(t, err, tc.want)
			})
		}
		// Exactly 400 days is allowed.
		_, err := admin.GetLatency(as(t, alice), &parleyv1.GetLatencyRequest{Range: &parleyv1.TimeRange{From: ts(now.AddDate(0, 0, -400)), To: ts(now)}})
		require.NoError(t, err)
	})
}

// TestAdminAnalytics drives a real parleyd on the embedded store (connect,
// send, receive, read, disconnect) and checks every query's exact
// answer.
func TestAdminAnalytics(t *testing.T) {
	t.Parallel()
	p, admin := startAnalytics(t)
	alice := newUser(t, p.URL(), "alice", 1)
	bob := newUser(t, p.URL(), "bob", 1)
	carol := newUser(t, p.URL(), "carol", 1)
	dm := createDirect(t, alice, bob)
	group := createGroup(t, bob, "crew", alice, carol)
	rng := around()

	alice.dev(0).connect(t)
	bob.dev(0).connect(t)
	var last *parleyv1.Message
	for _, body := range []string{"one", "two", "three"} {
		m, err := alice.dev(0).session.Send(t.Context(), dm, text(body))
		require.NoError(t, err)
		last = m
	}
	bob.dev(0).rec.waitSeq(t, dm, last.GetSeq())
	g, err := bob.dev(0).session.Send(t.Context(), group, text("hello crew"))
	require.NoError(t, err)
	alice.dev(0).rec.waitSeq(t, group, g.GetSeq())
	_, err = bob.client().Chat().MarkRead(t.Context(), &parleyv1.MarkReadRequest{ConversationId: dm, Seq: last.GetSeq()})
	require.NoError(t, err)
	alice.dev(0).disconnect(t)
	bob.dev(0).disconnect(t)

	ctx := as(t, alice)
	// Events are written in batches: wait (bounded) until the last ones,
	// the two closes, are in.
	require.Eventually(t, func() bool {
		res, err := admin.GetConnections(ctx, &parleyv1.GetConnectionsRequest{Range: rng, Bucket: parleyv1.TimeBucket_TIME_BUCKET_DAY})
		require.NoError(t, err)
		var closed uint64
		for _, b := range res.GetBuckets() {
			closed += b.GetClosed()
		}
		return closed >= 2
	}, waitTimeout, 10*time.Millisecond)

	t.Run("connections", func(t *testing.T) {
		res, err := admin.GetConnections(ctx, &parleyv1.GetConnectionsRequest{Range: rng, Bucket: parleyv1.TimeBucket_TIME_BUCKET_MINUTE})
		require.NoError(t, err)
		var opened, closed uint64
		for _, b := range res.GetBuckets() {
			opened += b.GetOpened()
			closed += b.GetClosed()
		}
		require.EqualValues(t, 2, opened)
		require.EqualValues(t, 2, closed)
		require.Zero(t, res.GetBuckets()[len(res.GetBuckets())-1].GetOpen(), "none open at the end")
	})
	t.Run("message_volume", func(t *testing.T) {
		res, err := admin.GetMessageVolume(ctx, &parleyv1.GetMessageVolumeRequest{Range: rng, Bucket: parleyv1.TimeBucket_TIME_BUCKET_MINUTE})
		require.NoError(t, err)
		var n uint64
		for _, b := range res.GetBuckets() {
			require.Zero(t, b.GetStart().AsTime().Second(), "minute buckets start on the minute")
			n += b.GetCount()
		}
		require.EqualValues(t, 4, n, "3 direct + 1 group message; system notices are not sent messages")
	})
	t.Run("busiest_conversations", func(t *testing.T) {
		res, err := admin.GetBusiestConversations(ctx, &parleyv1.GetBusiestConversationsRequest{Range: rng, Limit: 10})
		require.NoError(t, err)
		require.Len(t, res.GetConversations(), 2)
		require.Equal(t, dm, res.GetConversations()[0].GetConversationId())
		require.EqualValues(t, 3, res.GetConversations()[0].GetMessages())
		require.Equal(t, group, res.GetConversations()[1].GetConversationId())
		require.EqualValues(t, 1, res.GetConversations()[1].GetMessages())

		res, err = admin.GetBusiestConversations(ctx, &parleyv1.GetBusiestConversationsRequest{Range: rng, Limit: 1})
		require.NoError(t, err)
		require.Len(t, res.GetConversations(), 1)
	})
	t.Run("active_users", func(t *testing.T) {
		for _, period := range []parleyv1.ActivePeriod{parleyv1.ActivePeriod_ACTIVE_PERIOD_DAY, parleyv1.ActivePeriod_ACTIVE_PERIOD_MONTH} {
			res, err := admin.GetActiveUsers(ctx, &parleyv1.GetActiveUsersRequest{Range: rng, Period: period})
			require.NoError(t, err)
			var most uint64
			for _, p := range res.GetPeriods() {
				most = max(most, p.GetUsers())
			}
			// alice and bob connected and sent; carol did neither. (The
			// range spans two hours: at most two periods.)
			require.EqualValues(t, 2, most, "%s: %v", period, res.GetPeriods())
		}
	})
	t.Run("latency", func(t *testing.T) {
		res, err := admin.GetLatency(ctx, &parleyv1.GetLatencyRequest{Range: rng})
		require.NoError(t, err)
		// bob's device got the 3 direct messages, alice's the group one;
		// carol was offline, senders get acks.
		require.EqualValues(t, 4, res.GetDeliver().GetCount())
		require.EqualValues(t, 1, res.GetRead().GetCount(), "one read mark moved")
		d := res.GetDeliver()
		require.LessOrEqual(t, d.GetP50().AsDuration(), d.GetP90().AsDuration())
		require.LessOrEqual(t, d.GetP90().AsDuration(), d.GetP99().AsDuration())
		require.Less(t, d.GetP99().AsDuration(), waitTimeout)
		r := res.GetRead()
		require.Equal(t, r.GetP50().AsDuration(), r.GetP99().AsDuration(), "one value: every percentile is it")
		require.Less(t, r.GetP50().AsDuration(), waitTimeout)
	})
	t.Run("a_range_before_everything_is_empty", func(t *testing.T) {
		old := &parleyv1.TimeRange{From: timestamppb.New(time.Now().AddDate(0, 0, -10)), To: timestamppb.New(time.Now().AddDate(0, 0, -9))}
		res, err := admin.GetMessageVolume(ctx, &parleyv1.GetMessageVolumeRequest{Range: old, Bucket: parleyv1.TimeBucket_TIME_BUCKET_DAY})
		require.NoError(t, err)
		require.Empty(t, res.GetBuckets())
		lat, err := admin.GetLatency(ctx, &parleyv1.GetLatencyRequest{Range: old})
		require.NoError(t, err)
		require.Nil(t, lat.GetDeliver())
	})
}

// TestConnectionsLeftOpenByACrashAreClosed: a device's stream is open
// when parleyd is SIGKILLed, so its close is never recorded; the
// restarted process (same node) records it, and the connections series
// ends at zero open instead of counting that stream for ever.
func TestConnectionsLeftOpenByACrashAreClosed(t *testing.T) {
	t.Parallel()
	p := testserver.Start(t,
		testserver.WithArgs("-node", "crashy"),
		testserver.WithEnv("PARLEY_ANALYTICS_WRITER_FLUSH_INTERVAL=10ms"),
	)
	alice := newUser(t, p.URL(), "alice", 1) // the first user: an admin
	alice.dev(0).connect(t)
	openAtEnd := func() (int64, error) {
		admin := parleyv1connect.NewAdminServiceClient(p.Client(t))
		res, err := admin.GetConnections(as(t, alice), &parleyv1.GetConnectionsRequest{Range: around(), Bucket: parleyv1.TimeBucket_TIME_BUCKET_DAY})
		if err != nil {
			return -1, err
		}
		buckets := res.GetBuckets()
		if len(buckets) == 0 {
			return 0, nil
		}
		return buckets[len(buckets)-1].GetOpen(), nil
	}
	require.Eventually(t, func() bool {
		n, err := openAtEnd()
		return err == nil && n == 1
	}, waitTimeout, 10*time.Millisecond, "the stream's open is recorded")

	p.Kill()
	p.Restart(t) // on another port: the device does not come back
	require.Eventually(t, func() bool {
		n, err := openAtEnd()
		return err == nil && n == 0
	}, waitTimeout, 10*time.Millisecond, "the stream the crash left open is closed")

}
