package main

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// In a cluster the processes share their media through S3 (a real
// SeaweedFS here): an image uploaded through shard 0's process is read,
// as a stream and through a signed URL, through shard 1's.
func TestClusterSharesMediaThroughS3(t *testing.T) {
	t.Parallel()
	s3 := realsvc.StartS3TB(t)
	servers := startCluster(t, map[string]string{
		"PARLEY_MEDIA_BACKEND":              "s3",
		"PARLEY_MEDIA_S3_ENDPOINT":          s3.Endpoint(),
		"PARLEY_MEDIA_S3_BUCKET":            realsvc.S3Bucket,
		"PARLEY_MEDIA_S3_ACCESS_KEY_ID":     realsvc.S3AccessKeyID,
		"PARLEY_MEDIA_S3_SECRET_ACCESS_KEY": realsvc.S3SecretAccessKey,
		"PARLEY_MEDIA_S3_PREFIX":            "cluster-test/",
	}, 2)
	hc := h2cClient()
	ctx := t.Context()
	alice := registerOnShard(t, servers[0].url, "alice", 1, 0, 2)[0]
	bob := registerOnShard(t, servers[1].url, "bob", 1, 1, 2)[0]
	conv, err := alice.convs.CreateDirect(ctx, &parleyv1.CreateDirectRequest{Peer: &parleyv1.CreateDirectRequest_UserId{UserId: bob.id}})
	require.NoError(t, err)

	photo := pngOf(t, 400, 300)
	info, err := upload(ctx, mediaClient(hc, servers[0].url, alice), "cluster-photo", "photo.png", photo, 0, nil)
	require.NoError(t, err)
	_, err = alice.chat.SendMessage(ctx, &parleyv1.SendMessageRequest{
		ConversationId: conv.GetConversation().GetId(), ClientMsgId: "photo",
		Content: &parleyv1.Content{Body: &parleyv1.Content_Image{Image: &parleyv1.MediaRef{MediaId: info.GetMediaId()}}},
	})
	require.NoError(t, err)

	bm := mediaClient(hc, servers[1].url, bob)
	_, got, err := download(ctx, bm, info.GetMediaId(), false)
	require.NoError(t, err)
	require.Equal(t, photo, got)
	// A URL signed by one process works on the other: the key is derived
	// from the access-token key they share.
	gm, err := mediaClient(hc, servers[0].url, bob).GetMedia(ctx, &parleyv1.GetMediaRequest{MediaId: info.GetMediaId()})
	require.NoError(t, err)
	status, body := get(t, hc, servers[1].url+gm.GetUrl())
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, string(photo), body)
}
