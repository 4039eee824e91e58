package wire_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/server/wire"
	"github.com/parley-im/parley/storage"
)

// BenchmarkMessageFrame is the per-message encoding cost of the fan-out: a
// committed message becomes a ServerFrame and is marshalled once per
// stream it is written to.
//
//	go test ./server/wire -run '^$' -bench MessageFrame -benchmem
func BenchmarkMessageFrame(b *testing.B) {
	body, kind, err := wire.EncodeContent(&parleyv1.Content{Body: &parleyv1.Content_Text{Text: "a chat message of a typical length, some sixty bytes"}})
	if err != nil {
		b.Fatal(err)
	}
	m := storage.Message{
		ID: "01a21feb-f7fe-7642-b079-c9cf3bfb9d45", ConversationID: "01a21feb-f788-774d-a215-604b2a1e6faf", Seq: 12345,
		SenderID: "01a21feb-f788-774d-a215-604b2a1e6fb0", SenderDeviceID: "01a21feb-f788-774d-a215-604b2a1e6fb1",
		ClientMsgID: "c-123", Kind: kind, Body: body, CreatedAt: time.Now(),
	}
	b.Run("build", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = wire.MessageFrame(wire.Message(m))
		}
	})
	b.Run("build+marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := proto.Marshal(wire.MessageFrame(wire.Message(m))); err != nil {
				b.Fatal(err)
			}
		}
	})
}
