package main

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"

	"github.com/parley-im/parley/server/shard"
	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// rd is one throwaway redis-server for the tests of this binary that need
// it, started by the first of them and stopped by TestMain.
var rd struct {
	once sync.Once
	srv  *realsvc.Redis
	err  error
}

// redisURL returns the shared redis-server's URL. Tests keep apart by
// using a database of their own: the shared server has 16.
func redisURL(tb testing.TB) string {
	tb.Helper()
	rd.once.Do(func() { rd.srv, rd.err = realsvc.StartRedis(realsvc.RedisOptions{}) })
	require.NoError(tb, rd.err, "start redis-server")
	return fmt.Sprintf("redis://%s/%d", rd.srv.Addr(), redisDBs.next(tb))
}

var redisDBs dbCounter

type dbCounter struct {
	mu sync.Mutex
	n  int
}

func (c *dbCounter) next(tb testing.TB) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	require.Less(tb, c.n, 16, "redis-server has 16 databases; tests need their own")
	return c.n
}

// startCluster starts one parleyd per shard on one fresh PostgreSQL schema
// and one Redis database, sharing one signing key.
func startCluster(tb testing.TB, env map[string]string, shards int) []*testServer {
	tb.Helper()
	dsn, redis := postgresDSN(tb), redisURL(tb)
	env = maps.Clone(env)
	if env == nil {
		env = map[string]string{}
	}
	// The first process writes the key; the others read it.
	env["PARLEY_AUTH_SIGNING_KEY_FILE"] = filepath.Join(tb.TempDir(), "signing.key")
	servers := make([]*testServer, shards)
	for i := range servers {
		servers[i] = startServerEnv(tb, env, "-store", dsn, "-redis", redis,
			"-shard", strconv.Itoa(i), "-shards", strconv.Itoa(shards), "-node", "node"+strconv.Itoa(i))
	}
	return servers
}

// registerOnShard registers users at url until n of them belong to the
// shard that url serves (shard of shards), each with an HTTP/2
// connection of its own, and returns those n.
func registerOnShard(tb testing.TB, url, prefix string, n int, sh, shards int) []*user {
	tb.Helper()
	users := make([]*user, 0, n)
	for i := 0; len(users) < n; i++ {
		u := register(tb, h2cClient(), url, fmt.Sprintf("%s%04d", prefix, i))
		if shard.Of(u.id, shards) == sh {
			users = append(users, u)
		}
	}
	return users
}

// Two shards, one process each: a user on each exchanges messages,
// typing, receipts and presence through Redis; a stream opened on the
// wrong shard is told where to go.
func TestClusterAcrossShards(t *testing.T) {
	t.Parallel()
	servers := startCluster(t, benchEnv(), 2)
	alice := registerOnShard(t, servers[0].url, "alice", 1, 0, 2)[0]
	bob := registerOnShard(t, servers[1].url, "bob", 1, 1, 2)[0]
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	// Bob's client used the wrong process: the error names his shard.
	wrong := newUser(h2cClient(), servers[0].url, bob.id, bob.device, bob.token)
	ws, err := wrong.chat.Connect(ctx)
	require.NoError(t, err)
	require.NoError(t, ws.SendHeaders())
	_, err = ws.Receive()
	var ce *connect.Error
	require.ErrorAs(t, err, &ce)
	require.Equal(t, connect.CodeFailedPrecondition, ce.Code())
	require.Len(t, ce.Details(), 1)
	detail, err := connectproto.UnmarshalErrorDetail(ce.Details()[0])
	require.NoError(t, err)
	require.Equal(t, uint32(1), detail.(*parleyv1.LocateResponse).GetShard())

	conv, err := alice.convs.CreateDirect(ctx, &parleyv1.CreateDirectRequest{Peer: &parleyv1.CreateDirectRequest_UserId{UserId: bob.id}})
	require.NoError(t, err)
	cid := conv.GetConversation().GetId()
	bs, err := bob.chat.Connect(ctx)
	require.NoError(t, err)
	require.NoError(t, bs.SendHeaders())
	recv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetSyncComplete() != nil })

	// Presence crosses processes both ways: Alice finds Bob online in
	// Redis, Bob hears of Alice through his shard's stream.
	as, err := alice.chat.Connect(ctx)
	require.NoError(t, err)
	require.NoError(t, as.SendHeaders())
	p := recv(t, as, func(f *parleyv1.ServerFrame) bool { return f.GetPresence() != nil })
	require.Equal(t, bob.id, p.GetPresence().GetUserId())
	require.True(t, p.GetPresence().GetOnline())
	p = recv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetPresence() != nil })
	require.Equal(t, alice.id, p.GetPresence().GetUserId())
	require.True(t, p.GetPresence().GetOnline())

	// A message: Alice's device gets its SendAck, Bob's the message.
	require.NoError(t, as.Send(&parleyv1.ConnectRequest{Frame: &parleyv1.ClientFrame{Kind: &parleyv1.ClientFrame_Send{Send: &parleyv1.SendFrame{
		ConversationId: cid, ClientMsgId: "a1", Content: &parleyv1.Content{Body: &parleyv1.Content_Text{Text: "across shards"}},
	}}}}))
	ack := recv(t, as, func(f *parleyv1.ServerFrame) bool { return f.GetSendAck() != nil })
	require.Equal(t, "a1", ack.GetSendAck().GetClientMsgId())
	m := recv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetMessage() != nil })
	require.Equal(t, "across shards", m.GetMessage().GetContent().GetText())
	require.Equal(t, uint64(1), m.GetMessage().GetSeq())

	// Typing and read receipts travel the same way.
	require.NoError(t, bs.Send(&parleyv1.ConnectRequest{Frame: &parleyv1.ClientFrame{Kind: &parleyv1.ClientFrame_Typing{Typing: &parleyv1.TypingFrame{ConversationId: cid, Typing: true}}}}))
	ty := recv(t, as, func(f *parleyv1.ServerFrame) bool { return f.GetTyping() != nil })
	require.Equal(t, bob.id, ty.GetTyping().GetUserId())
	require.NoError(t, bs.Send(&parleyv1.ConnectRequest{Frame: &parleyv1.ClientFrame{Kind: &parleyv1.ClientFrame_Read{Read: &parleyv1.ReadFrame{ConversationId: cid, Seq: 1}}}}))
	r := recv(t, as, func(f *parleyv1.ServerFrame) bool { return f.GetReceipt() != nil })
	require.Equal(t, bob.id, r.GetReceipt().GetUserId())
	require.Equal(t, uint64(1), r.GetReceipt().GetLastReadSeq())

	// A group created on shard 0's process reaches Bob on shard 1 live.
	g, err := alice.convs.CreateGroup(ctx, &parleyv1.CreateGroupRequest{Title: "both shards", MemberIds: []string{bob.id}})
	require.NoError(t, err)
	m = recv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetMessage() != nil })
	require.Equal(t, g.GetConversation().GetId(), m.GetMessage().GetConversationId())

	// Alice leaves: Bob sees her go offline.
	require.NoError(t, as.CloseSend())
	for {
		if _, err := as.Receive(); err != nil {
			break
		}
	}
	p = recv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetPresence() != nil })
	require.Equal(t, alice.id, p.GetPresence().GetUserId())
	require.False(t, p.GetPresence().GetOnline())
}
