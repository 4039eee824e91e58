package server

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
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
