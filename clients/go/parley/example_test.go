package parley_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"connectrpc.com/connect/v2"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/parley"
)

func ExampleLogin() {
	ctx := context.Background()
	client, err := parley.Login(ctx, "http://127.0.0.1:8080", "alice", "correct horse battery staple",
		parley.WithDeviceName("laptop"),
		// Persist every refreshed pair: the previous refresh token is spent.
		parley.WithCredentialsHook(func(creds parley.Credentials) { save(creds) }),
	)
	if connect.CodeOf(err) == connect.CodeUnauthenticated {
		log.Print("wrong username or password")
		return
	}
	if err != nil {
		log.Print(err)
		return
	}
	save(client.Credentials())
}

func ExampleResume() {
	client, err := parley.Resume("http://127.0.0.1:8080", load())
	if err != nil {
		log.Print(err)
		return
	}
	res, err := client.Conversations().ListConversations(context.Background(), &parleyv1.ListConversationsRequest{})
	if errors.Is(err, parley.ErrRevoked) {
		log.Print("signed out: log in again")
		return
	}
	if err != nil {
		log.Print(err)
		return
	}
	for _, c := range res.GetConversations() {
		fmt.Println(c.GetConversation().GetId(), c.GetUnreadCount())
	}
}

func ExampleClient_Connect() {
	ctx := context.Background()
	client, err := parley.Resume("http://127.0.0.1:8080", load())
	if err != nil {
		log.Print(err)
		return
	}
	session := client.Connect(ctx)
	defer session.Close()

	// One goroutine drains the events; the Session acknowledges each message
	// once it was received here.
	for ev := range session.Events() {
		switch ev := ev.(type) {
		case *parley.MessageEvent:
			fmt.Println(ev.Message.GetConversationId(), ev.Message.GetSeq(), ev.Message.GetContent().GetText())
		case *parley.GapEvent:
			// Older messages were skipped during catch-up: page them if needed.
			msgs, _, err := client.History(ctx, ev.ConversationID, ev.FromSeq, 50)
			if err == nil {
				fmt.Println("fetched", len(msgs), "older messages")
			}
		case *parley.EpochChangedEvent:
			fmt.Println("server history was reset: drop local state")
		case *parley.DisconnectedEvent:
			if ev.Final {
				log.Print(ev.Err) // e.g. revoked: log in again
				return
			}
		}
	}
}

func ExampleSession_Send() {
	ctx := context.Background()
	client, err := parley.Resume("http://127.0.0.1:8080", load())
	if err != nil {
		log.Print(err)
		return
	}
	dm, err := client.Conversations().CreateDirect(ctx, &parleyv1.CreateDirectRequest{
		Peer: &parleyv1.CreateDirectRequest_Username{Username: "bob"},
	})
	if err != nil {
		log.Print(err)
		return
	}
	session := client.Connect(ctx)
	defer session.Close()
	go func() {
		for range session.Events() { // the application must drain events
		}
	}()
	msg, err := session.Send(ctx, dm.GetConversation().GetId(), parley.Text("hi bob"))
	if connect.CodeOf(err) == connect.CodeInvalidArgument {
		log.Print("message rejected: ", err)
		return
	}
	if err != nil {
		log.Print(err)
		return
	}
	fmt.Println("committed as seq", msg.GetSeq())
}

func ExampleSession_SendWithID() {
	ctx := context.Background()
	client, err := parley.Resume("http://127.0.0.1:8080", load())
	if err != nil {
		log.Print(err)
		return
	}
	session := client.Connect(ctx)
	defer session.Close()
	// An outbox that survives restarts keeps the id with the message; sending
	// it again after a crash returns the original instead of a copy.
	ack, err := session.SendWithID(ctx, "conversation-id", "0190d1a0-7c1e-7000-8000-000000000001", parley.Text("hello"))
	if err != nil {
		log.Print(err)
		return
	}
	fmt.Println(ack.GetMessage().GetSeq(), ack.GetDuplicate())
}

func save(parley.Credentials)  {}
func load() parley.Credentials { return parley.Credentials{} }
