package parley_test

import (
	"context"
	"log"
	"os"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/parley"
)

func ExampleClient_UploadFile() {
	ctx := context.Background()
	client, err := parley.Resume("http://127.0.0.1:8080", load())
	if err != nil {
		log.Print(err)
		return
	}
	// Interrupted streams are resumed where the server's copy ends.
	info, err := client.UploadFile(ctx, "cat.jpg", parley.WithAttempts(8))
	if err != nil {
		log.Print(err)
		return
	}
	content := parley.File(info.GetMediaId(), "the report")
	if info.GetWidth() > 0 { // the server decoded an image
		content = parley.Image(info.GetMediaId(), "look")
	}
	_, err = client.Chat().SendMessage(ctx, &parleyv1.SendMessageRequest{
		ConversationId: "conversation id",
		ClientMsgId:    "a fresh uuid",
		Content:        content,
	})
	if err != nil {
		log.Print(err)
	}
}

func ExampleClient_Download() {
	ctx := context.Background()
	client, err := parley.Resume("http://127.0.0.1:8080", load())
	if err != nil {
		log.Print(err)
		return
	}
	f, err := os.Create("preview.jpg")
	if err != nil {
		log.Print(err)
		return
	}
	defer f.Close()
	if _, err := client.Download(ctx, "media id", f, parley.WithThumbnail()); err != nil {
		log.Print(err)
	}
}
