package server

import (
	"fmt"
	"strings"
	"testing"

	"connectrpc.com/connect/v2"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/server/shard"
	"github.com/parley-im/parley/storage"
)

func TestFitPage(t *testing.T) {
	t.Parallel()
	big := func(seq uint64) *parleyv1.Message {
		return &parleyv1.Message{Seq: seq, Content: &parleyv1.Content{Body: &parleyv1.Content_Text{Text: strings.Repeat("x", 64<<10)}}}
	}
	var page []*parleyv1.Message
	for i := range 200 {
		page = append(page, big(uint64(i+1)))
	}
	kept := fitPage(page, storage.After)
	require.Less(t, kept, 200)
	require.Greater(t, kept, 40)
	require.Equal(t, kept, fitPage(page, storage.Before))

	small := []*parleyv1.Message{{Seq: 1}, {Seq: 2}}
	require.Equal(t, 2, fitPage(small, storage.After))
	require.Equal(t, 1, fitPage(page[:1], storage.Before), "one message always fits")
}

func TestWrongShardNamesTheRightOne(t *testing.T) {
	t.Parallel()
	s := &Server{layout: shard.Layout{Shard: 0, Shards: 3, Addresses: []string{"http://s0", "http://s1", "http://s2"}}}
	user := ""
	for i := 0; user == ""; i++ {
		if id := fmt.Sprintf("u%d", i); !s.layout.Owns(id) {
			user = id
		}
	}
	err := s.wrongShard(user)
	require.Equal(t, connect.CodeFailedPrecondition, connect.CodeOf(err))
	var ce *connect.Error
	require.ErrorAs(t, err, &ce)
	require.Len(t, ce.Details(), 1)
	var loc parleyv1.LocateResponse
	require.NoError(t, proto.Unmarshal(ce.Details()[0].Value, &loc))
	want := s.layout.Of(user)
	require.Equal(t, uint32(want), loc.GetShard())
	require.Equal(t, uint32(3), loc.GetShards())
	require.Equal(t, fmt.Sprintf("http://s%d", want), loc.GetAddress())
}
