package route_test

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/server/hub"
	"github.com/parley-im/parley/server/route"
	"github.com/parley-im/parley/server/shard"
	"github.com/parley-im/parley/storage/redis"
	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

var prefixes atomic.Int64

// openRedis connects to srv under a key prefix of the test's own.
func openRedis(t testing.TB, srv *realsvc.Redis) *redis.Redis {
	t.Helper()
	r, err := redis.New(t.Context(), redis.Config{
		URL:          srv.URL(),
		KeyPrefix:    "route" + strconv.FormatInt(prefixes.Add(1), 10) + ":",
		BlockTimeout: 50 * time.Millisecond,
		MinBackoff:   5 * time.Millisecond,
		MaxBackoff:   50 * time.Millisecond,
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	return r
}

// node is one server process: a hub and its Cluster, reading its shard.
type node struct {
	hub     *hub.Hub
	cluster *route.Cluster
}

func startNode(t testing.TB, r *redis.Redis, name string, sh, shards int) *node {
	t.Helper()
	h := hub.New(hub.DefaultConfig())
	c := route.New(route.Config{Node: name, PublishTimeout: 200 * time.Millisecond, RecheckRetry: 10 * time.Millisecond},
		h, r, shard.Layout{Shard: sh, Shards: shards}, slog.New(slog.DiscardHandler))
	require.NoError(t, c.Join(t.Context()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return &node{hub: h, cluster: c}
}

// connect registers a live device on n.
func (n *node) connect(t testing.TB, user, device string) *hub.Conn {
	t.Helper()
	c, _ := n.hub.Register(user, device)
	require.True(t, c.Release(t.Context()))
	return c
}

// userOn returns a user id that lives on shard sh of shards.
func userOn(sh, shards int, name string) string {
	for i := 0; ; i++ {
		id := fmt.Sprintf("%s-%d", name, i)
		if shard.Of(id, shards) == sh {
			return id
		}
	}
}

func next(t *testing.T, c *hub.Conn) *parleyv1.ServerFrame {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	f, ok := c.Next(ctx)
	require.True(t, ok, "no frame for %s/%s", c.UserID(), c.DeviceID())
	return f
}

func message(conv string, seq uint64) *parleyv1.ServerFrame {
	return &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Message{Message: &parleyv1.Message{ConversationId: conv, Seq: seq, Content: &parleyv1.Content{Body: &parleyv1.Content_Text{Text: "hi"}}}}}
}

func TestDeliveriesReachEveryProcessOfTheRecipientsShards(t *testing.T) {
	t.Parallel()
	r := openRedis(t, server)
	a := startNode(t, r, "a", 0, 2)
	b := startNode(t, r, "b", 0, 2) // a replica of shard 0
	c := startNode(t, r, "c", 1, 2)
	x, y := userOn(0, 2, "x"), userOn(1, 2, "y")
	xOnA, xOnB, yOnC := a.connect(t, x, "x1"), b.connect(t, x, "x2"), c.connect(t, y, "y1")

	ack := &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_SendAck{SendAck: &parleyv1.SendAck{ClientMsgId: "m1", Message: message("conv", 1).GetMessage()}}}
	a.cluster.Route(t.Context(), []hub.Delivery{
		{Frame: message("conv", 1), Users: []string{x, y}, Ack: ack, AckUser: x, AckDevice: "x1"},
		{Frame: message("conv", 2), Users: []string{x, y}},
	})

	require.Equal(t, "m1", next(t, xOnA).GetSendAck().GetClientMsgId(), "the sender's device gets its SendAck, locally")
	require.Equal(t, uint64(2), next(t, xOnA).GetMessage().GetSeq(), "and nothing twice: its own entry is skipped")
	for _, conn := range []*hub.Conn{xOnB, yOnC} {
		require.Equal(t, uint64(1), next(t, conn).GetMessage().GetSeq())
		f := next(t, conn)
		require.Equal(t, uint64(2), f.GetMessage().GetSeq())
		require.Equal(t, "hi", f.GetMessage().GetContent().GetText(), "frames survive the trip intact")
	}

	// A user's SendAck follows the device wherever it is connected.
	ack2 := &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_SendAck{SendAck: &parleyv1.SendAck{ClientMsgId: "m3", Message: message("conv", 3).GetMessage()}}}
	c.cluster.Route(t.Context(), []hub.Delivery{{Frame: message("conv", 3), Users: []string{x, y}, Ack: ack2, AckUser: x, AckDevice: "x2"}})
	require.Equal(t, uint64(3), next(t, yOnC).GetMessage().GetSeq())
	require.Equal(t, uint64(3), next(t, xOnA).GetMessage().GetSeq())
	require.Equal(t, "m3", next(t, xOnB).GetSendAck().GetClientMsgId())
}

func TestFailedPublishMakesEveryProcessRecheck(t *testing.T) {
	t.Parallel()
	// With the append-only file the stream and groups survive the
	// restart, so only the owed recheck entry can wake the reader.
	srv := realsvc.StartRedisTB(t, realsvc.RedisOptions{AppendOnly: true})
	r := openRedis(t, srv)
	a := startNode(t, r, "a", 0, 1)
	b := startNode(t, r, "b", 0, 1)
	x := userOn(0, 1, "x")
	xOnA, xOnB := a.connect(t, x, "x1"), b.connect(t, x, "x2")

	require.NoError(t, srv.Halt())
	a.cluster.Route(t.Context(), []hub.Delivery{{Frame: message("conv", 1), Users: []string{x}}})
	require.Equal(t, uint64(1), next(t, xOnA).GetMessage().GetSeq(), "local devices do not depend on Redis")
	require.NoError(t, srv.Restart())

	select {
	case <-xOnB.Repairs():
	case <-time.After(10 * time.Second):
		t.Fatal("the other process was never asked to recheck")
	}
	_, _, recheck := xOnB.TakeRepair()
	require.True(t, recheck)
}

func TestLostConsumerGroupMakesTheProcessRecheck(t *testing.T) {
	t.Parallel()
	srv := realsvc.StartRedisTB(t, realsvc.RedisOptions{}) // comes back empty
	r := openRedis(t, srv)
	b := startNode(t, r, "b", 0, 1)
	xOnB := b.connect(t, userOn(0, 1, "x"), "x2")
	require.NoError(t, srv.Restart())
	select {
	case <-xOnB.Repairs():
	case <-time.After(10 * time.Second):
		t.Fatal("no recheck after Redis lost the group")
	}
	_, _, recheck := xOnB.TakeRepair()
	require.True(t, recheck)
}

func TestRevokedDeviceIsClosedOnAnyProcess(t *testing.T) {
	t.Parallel()
	r := openRedis(t, server)
	a := startNode(t, r, "a", 0, 2)
	c := startNode(t, r, "c", 1, 2)
	y := userOn(1, 2, "y")
	yOnC := c.connect(t, y, "y1")
	a.cluster.CloseDevice(t.Context(), "y1")
	select {
	case <-yOnC.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked device's stream on another process stayed open")
	}
	require.ErrorIs(t, yOnC.Err(), hub.ErrRevoked)
}
