package server

import (
	"context"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
)

// clusterService implements parleyv1connect.ClusterServiceHandler.
type clusterService struct {
	parleyv1connect.UnimplementedClusterServiceHandler
	s *Server
}

func (c *clusterService) Locate(ctx context.Context, req *parleyv1.LocateRequest) (*parleyv1.LocateResponse, error) {
	userID := req.GetUserId()
	if userID == "" {
		userID = mustIdentity(ctx).UserID
	}
	return c.s.locate(userID), nil
}

func (s *Server) locate(userID string) *parleyv1.LocateResponse {
	sh := s.layout.Of(userID)
	return &parleyv1.LocateResponse{
		UserId:  userID,
		Shard:   uint32(sh),
		Shards:  uint32(s.layout.Shards),
		Address: s.layout.Address(sh),
	}
}

// wrongShard is the error for a stream opened on a process of another
// shard; its detail is the LocateResponse naming the right one.
func (s *Server) wrongShard(userID string) error {
	loc := s.locate(userID)
	err := connect.Errorf(connect.CodeFailedPrecondition, "user is served by shard %d of %d; reconnect there", loc.GetShard(), loc.GetShards())
	if detail, derr := connectproto.NewErrorDetail(loc); derr == nil {
		err = err.WithDetail(detail)
	}
	return err
}
