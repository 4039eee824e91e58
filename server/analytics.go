package server

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/analytics"
)

var (
	errNotAdmin = connect.NewError(connect.CodePermissionDenied,
		"admin only: the AdminService answers the first registered user and the usernames in admin.users")
	errNoAnalytics = connect.NewError(connect.CodeFailedPrecondition,
		"analytics needs ClickHouse (analytics.clickhouse)")
)

// EventRecorder takes analytics events (never message content). Record
// must not block: streams call it as they open and close.
type EventRecorder interface {
	Record(e analytics.Event)
}

// record hands e to the event recorder, if any.
func (s *Server) record(e analytics.Event) {
	if s.events != nil {
		s.events.Record(e)
	}
}

// AnalyticsReader answers the AdminService's queries, with the semantics
// storage/analytics describes: ClickHouse in a cluster, the embedded
// store on a single node.
type AnalyticsReader = analytics.Reader

// FirstUserStore knows the first registered user, an admin always.
type FirstUserStore interface {
	// FirstUserID returns the first user's id, or an error wrapping
	// storage.ErrNotFound while there is none. Once set it never changes.
	FirstUserID(ctx context.Context) (string, error)
}

// AdminDeps are what the AdminService needs.
type AdminDeps struct {
	// Analytics answers the queries. nil (a PostgreSQL cluster without
	// ClickHouse) answers every admin's call FailedPrecondition.
	Analytics AnalyticsReader
	// FirstUser names the first registered user. Required.
	FirstUser FirstUserStore
	// Usernames are admins besides the first user. They compare as
	// registered usernames do: case-insensitively.
	Usernames []string
}

// adminService serves parley.v1.AdminService to admins only.
type adminService struct {
	s         *Server
	analytics AnalyticsReader
	firstUser FirstUserStore
	usernames map[string]bool
	// first caches the first user's id once known: it never changes.
	first atomic.Pointer[string]
}

func newAdminService(s *Server, d *AdminDeps) (*adminService, error) {
	if d.FirstUser == nil {
		return nil, errors.New("admin: FirstUser is required")
	}
	a := &adminService{s: s, analytics: d.Analytics, firstUser: d.FirstUser, usernames: make(map[string]bool, len(d.Usernames))}
	for _, u := range d.Usernames {
		if u = strings.ToLower(strings.TrimSpace(u)); u != "" {
			a.usernames[u] = true
		}
	}
	return a, nil
}

// authorize admits admins: the first registered user, then the configured
// usernames (looked up on every call, so a configured name registered
// later is an admin from then on). The caller is authenticated already:
// the interceptor refuses calls without a valid token.
func (a *adminService) authorize(ctx context.Context, op string) error {
	id := mustIdentity(ctx)
	first, err := a.firstUserID(ctx)
	if err != nil {
		return toConnect(ctx, a.s.logger, op, err)
	}
	if id.UserID == first {
		return a.ready()
	}
	if len(a.usernames) == 0 {
		return errNotAdmin
	}
	u, err := a.s.store.GetUser(ctx, id.UserID)
	if errors.Is(err, storage.ErrNotFound) {
		return errNotAdmin
	}
	if err != nil {
		return toConnect(ctx, a.s.logger, op, err)
	}
	if !a.usernames[u.Username] {
		return errNotAdmin
	}
	return a.ready()
}

// ready refuses admins' calls when no backend answers analytics.
func (a *adminService) ready() error {
	if a.analytics == nil {
		return errNoAnalytics
	}
	return nil
}

// firstUserID is the first user's id; "" while there is none.
func (a *adminService) firstUserID(ctx context.Context) (string, error) {
	if p := a.first.Load(); p != nil {
		return *p, nil
	}
	id, err := a.firstUser.FirstUserID(ctx)
	if errors.Is(err, storage.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	a.first.Store(&id)
	return id, nil
}

func (a *adminService) GetMessageVolume(ctx context.Context, req *parleyv1.GetMessageVolumeRequest) (*parleyv1.GetMessageVolumeResponse, error) {
	const op = "GetMessageVolume"
	if err := a.authorize(ctx, op); err != nil {
		return nil, err
	}
	from, to := timeRange(req.GetRange())
	counts, err := a.analytics.MessageVolume(ctx, from, to, bucketOf(req.GetBucket()))
	if err != nil {
		return nil, toConnect(ctx, a.s.logger, op, err)
	}
	res := &parleyv1.GetMessageVolumeResponse{Buckets: make([]*parleyv1.CountBucket, len(counts))}
	for i, c := range counts {
		res.Buckets[i] = &parleyv1.CountBucket{Start: timestamppb.New(c.Start), Count: c.Count}
	}
	return res, nil
}

func (a *adminService) GetActiveUsers(ctx context.Context, req *parleyv1.GetActiveUsersRequest) (*parleyv1.GetActiveUsersResponse, error) {
	const op = "GetActiveUsers"
	if err := a.authorize(ctx, op); err != nil {
		return nil, err
	}
	from, to := timeRange(req.GetRange())
	query := a.analytics.DailyActiveUsers
	if req.GetPeriod() == parleyv1.ActivePeriod_ACTIVE_PERIOD_MONTH {
		query = a.analytics.MonthlyActiveUsers
	}
	periods, err := query(ctx, from, to)
	if err != nil {
		return nil, toConnect(ctx, a.s.logger, op, err)
	}
	res := &parleyv1.GetActiveUsersResponse{Periods: make([]*parleyv1.ActiveUsers, len(periods))}
	for i, p := range periods {
		res.Periods[i] = &parleyv1.ActiveUsers{Start: timestamppb.New(p.Start), Users: p.Users}
	}
	return res, nil
}

func (a *adminService) GetLatency(ctx context.Context, req *parleyv1.GetLatencyRequest) (*parleyv1.GetLatencyResponse, error) {
	const op = "GetLatency"
	if err := a.authorize(ctx, op); err != nil {
		return nil, err
	}
	from, to := timeRange(req.GetRange())
	ls, err := a.analytics.Latency(ctx, from, to)
	if err != nil {
		return nil, toConnect(ctx, a.s.logger, op, err)
	}
	res := &parleyv1.GetLatencyResponse{}
	for _, l := range ls {
		p := &parleyv1.LatencyPercentiles{
			Count: l.Count, P50: durationpb.New(l.P50), P90: durationpb.New(l.P90), P99: durationpb.New(l.P99),
		}
		switch l.Kind {
		case analytics.EventMessageDelivered:
			res.Deliver = p
		case analytics.EventMessageRead:
			res.Read = p
		}
	}
	return res, nil
}

func (a *adminService) GetBusiestConversations(ctx context.Context, req *parleyv1.GetBusiestConversationsRequest) (*parleyv1.GetBusiestConversationsResponse, error) {
	const op = "GetBusiestConversations"
	if err := a.authorize(ctx, op); err != nil {
		return nil, err
	}
	from, to := timeRange(req.GetRange())
	convs, err := a.analytics.BusiestConversations(ctx, from, to, int(req.GetLimit()))
	if err != nil {
		return nil, toConnect(ctx, a.s.logger, op, err)
	}
	res := &parleyv1.GetBusiestConversationsResponse{Conversations: make([]*parleyv1.ConversationVolume, len(convs))}
	for i, c := range convs {
		res.Conversations[i] = &parleyv1.ConversationVolume{ConversationId: c.ConversationID, Messages: c.Messages}
	}
	return res, nil
}

func (a *adminService) GetConnections(ctx context.Context, req *parleyv1.GetConnectionsRequest) (*parleyv1.GetConnectionsResponse, error) {
	const op = "GetConnections"
	if err := a.authorize(ctx, op); err != nil {
		return nil, err
	}
	from, to := timeRange(req.GetRange())
	conns, err := a.analytics.ConnectionsOverTime(ctx, from, to, bucketOf(req.GetBucket()))
	if err != nil {
		return nil, toConnect(ctx, a.s.logger, op, err)
	}
	res := &parleyv1.GetConnectionsResponse{Buckets: make([]*parleyv1.ConnectionBucket, len(conns))}
	for i, c := range conns {
		res.Buckets[i] = &parleyv1.ConnectionBucket{Start: timestamppb.New(c.Start), Opened: c.Opened, Closed: c.Closed, Open: c.Open}
	}
	return res, nil
}

// timeRange is a validated TimeRange as times.
func timeRange(r *parleyv1.TimeRange) (from, to time.Time) {
	return r.GetFrom().AsTime(), r.GetTo().AsTime()
}

// bucketOf maps a validated TimeBucket (never unspecified).
func bucketOf(b parleyv1.TimeBucket) analytics.Bucket {
	switch b {
	case parleyv1.TimeBucket_TIME_BUCKET_MINUTE:
		return analytics.BucketMinute
	case parleyv1.TimeBucket_TIME_BUCKET_HOUR:
		return analytics.BucketHour
	}
	return analytics.BucketDay
}
