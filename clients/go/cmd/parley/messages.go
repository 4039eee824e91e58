package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/parley"
)

func (a *app) send(ctx context.Context, args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("%w: send CONV TEXT [TEXT ...]", errUsage)
	}
	client, err := a.client()
	if err != nil {
		return err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	res, err := client.Chat().SendMessage(ctx, &parleyv1.SendMessageRequest{
		ConversationId: args[0],
		ClientMsgId:    id.String(),
		Content:        parley.Text(strings.Join(args[1:], " ")),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "sent #%d\n", res.GetMessage().GetSeq())
	return nil
}

func (a *app) history(ctx context.Context, args []string) error {
	fs := newFlagSet("history", a.env)
	limit := fs.Uint("limit", 20, "number of messages (1..200)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: history CONV [-limit N]", errUsage)
	}
	if *limit < 1 || *limit > 200 {
		return fmt.Errorf("%w: -limit must be 1..200", errUsage)
	}
	client, err := a.client()
	if err != nil {
		return err
	}
	res, err := client.Chat().GetHistory(ctx, &parleyv1.GetHistoryRequest{
		ConversationId: pos[0],
		Direction:      parleyv1.HistoryDirection_HISTORY_DIRECTION_BEFORE,
		Limit:          uint32(*limit),
	})
	if err != nil {
		return err
	}
	names := newNames(client)
	for _, m := range res.GetMessages() {
		fmt.Fprintln(a.stdout, formatMessage(ctx, names, m))
	}
	return nil
}

func (a *app) search(ctx context.Context, args []string) error {
	fs := newFlagSet("search", a.env)
	conv := fs.String("conv", "", "search only this conversation")
	limit := fs.Uint("limit", 20, "number of results (1..100)")
	page := fs.String("page", "", "continue from a previous search's next page token")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return fmt.Errorf("%w: search [-conv CONV] [-limit N] [-page TOKEN] WORD [WORD ...]", errUsage)
	}
	if *limit < 1 || *limit > 100 {
		return fmt.Errorf("%w: -limit must be 1..100", errUsage)
	}
	client, err := a.client()
	if err != nil {
		return err
	}
	results, next, err := client.Search(ctx, strings.Join(pos, " "), *conv, *page, uint32(*limit))
	if err != nil {
		return err
	}
	names := newNames(client)
	for _, r := range results {
		at := r.GetCreatedAt().AsTime().Local().Format(time.DateTime)
		who := names.of(ctx, r.GetConversationId(), r.GetSenderId())
		fmt.Fprintf(a.stdout, "%s #%d %s %s: %s\n", r.GetConversationId(), r.GetSeq(), at, who, bracketed(r))
	}
	if next != "" {
		fmt.Fprintf(a.stdout, "-- more: -page %s\n", next)
	}
	return nil
}

// bracketed is a result's snippet with its highlights in [brackets], on
// one line.
func bracketed(r *parleyv1.SearchResult) string {
	runes := []rune(r.GetSnippet())
	var b strings.Builder
	at := 0
	for _, h := range r.GetHighlights() {
		start, end := min(int(h.GetStart()), len(runes)), min(int(h.GetEnd()), len(runes))
		if start < at || end < start {
			continue
		}
		b.WriteString(string(runes[at:start]))
		b.WriteString("[" + string(runes[start:end]) + "]")
		at = end
	}
	b.WriteString(string(runes[at:]))
	return strings.Join(strings.Fields(b.String()), " ")
}

func (a *app) listen(ctx context.Context, args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("%w: listen takes no arguments", errUsage)
	}
	client, err := a.client()
	if err != nil {
		return err
	}
	session := client.Connect(ctx)
	defer session.Close()
	names := newNames(client)
	for ev := range session.Events() {
		if line := formatEvent(ctx, names, ev); line != "" {
			fmt.Fprintln(a.stdout, line)
		}
		if d, ok := ev.(*parley.DisconnectedEvent); ok && d.Final {
			return d.Err
		}
	}
	return nil
}
