package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/parley"
)

func (a *app) dm(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%w: dm USER", errUsage)
	}
	client, err := a.client()
	if err != nil {
		return err
	}
	ids, err := lookupAll(ctx, client, args)
	if err != nil {
		return err
	}
	res, err := client.Conversations().CreateDirect(ctx, &parleyv1.CreateDirectRequest{
		Peer: &parleyv1.CreateDirectRequest_UserId{UserId: ids[0]},
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, res.GetConversation().GetId())
	return nil
}

func (a *app) group(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: group create|add|remove", errUsage)
	}
	client, err := a.client()
	if err != nil {
		return err
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "create":
		if len(rest) < 1 {
			return fmt.Errorf("%w: group create TITLE [USER ...]", errUsage)
		}
		ids, err := lookupAll(ctx, client, rest[1:])
		if err != nil {
			return err
		}
		res, err := client.Conversations().CreateGroup(ctx, &parleyv1.CreateGroupRequest{Title: rest[0], MemberIds: ids})
		if err != nil {
			return err
		}
		fmt.Fprintln(a.stdout, res.GetConversation().GetId())
	case "add":
		if len(rest) < 2 {
			return fmt.Errorf("%w: group add CONV USER [USER ...]", errUsage)
		}
		ids, err := lookupAll(ctx, client, rest[1:])
		if err != nil {
			return err
		}
		res, err := client.Conversations().AddMembers(ctx, &parleyv1.AddMembersRequest{ConversationId: rest[0], UserIds: ids})
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "added at seq %d\n", res.GetSeq())
	case "remove":
		if len(rest) != 2 {
			return fmt.Errorf("%w: group remove CONV USER", errUsage)
		}
		ids, err := lookupAll(ctx, client, rest[1:])
		if err != nil {
			return err
		}
		res, err := client.Conversations().RemoveMember(ctx, &parleyv1.RemoveMemberRequest{ConversationId: rest[0], UserId: ids[0]})
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "removed at seq %d\n", res.GetSeq())
	default:
		return fmt.Errorf("%w: unknown group command %q", errUsage, sub)
	}
	return nil
}

func (a *app) conversations(ctx context.Context, args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("%w: conversations takes no arguments", errUsage)
	}
	client, err := a.client()
	if err != nil {
		return err
	}
	res, err := client.Conversations().ListConversations(ctx, &parleyv1.ListConversationsRequest{})
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tNAME\tUNREAD\tLAST")
	for _, s := range res.GetConversations() {
		c := s.GetConversation()
		name := c.GetTitle()
		if c.GetKind() == parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT {
			name = "@" + s.GetPeer().GetUsername()
		}
		last := ""
		if m := s.GetLastMessage(); m != nil {
			last = truncate(body(m), 40)
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", c.GetId(), name, s.GetUnreadCount(), last)
	}
	return w.Flush()
}

// lookupAll resolves usernames to user ids.
func lookupAll(ctx context.Context, client *parley.Client, usernames []string) ([]string, error) {
	ids := make([]string, 0, len(usernames))
	for _, name := range usernames {
		u, err := client.LookupUser(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("look up %s: %w", name, err)
		}
		ids = append(ids, u.GetId())
	}
	return ids, nil
}
