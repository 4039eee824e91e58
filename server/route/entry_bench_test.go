package route

import (
	"testing"

	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
)

// BenchmarkEntry is the routing cost of a commit batch of 256 one-to-one
// messages for one shard: encoding the Redis entry on the publishing
// process and decoding it (frames included) on the reading one. Reported
// per message.
//
//	go test ./server/route -run '^$' -bench Entry -benchmem
func BenchmarkEntry(b *testing.B) {
	const batch = 256
	frame, err := proto.Marshal(&parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Message{Message: &parleyv1.Message{
		Id: "01a21feb-f7fe-7642-b079-c9cf3bfb9d45", ConversationId: "01a21feb-f788-774d-a215-604b2a1e6faf", Seq: 12345,
		SenderId: "01a21feb-f788-774d-a215-604b2a1e6fb0", ClientMsgId: "c-123",
		Content: &parleyv1.Content{Body: &parleyv1.Content_Text{Text: "a chat message of a typical length, some sixty bytes"}},
	}}})
	if err != nil {
		b.Fatal(err)
	}
	ds := make([]encodedDelivery, batch)
	for i := range ds {
		ds[i] = encodedDelivery{frame: frame, users: []string{"01a21feb-f788-774d-a215-604b2a1e6fb2"}}
	}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = encodeEntry("node-0", false, ds)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/msg")
	})
	payload := encodeEntry("node-0", false, ds)
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeEntry(payload); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/msg")
	})
}
