package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/types/known/timestamppb"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/server/wire"
	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/textsearch"
)

const (
	defaultSearchPageSize = 20
	// snippetRunes is how much of a message's text a search result shows.
	snippetRunes = 200
	// searchTokenVersion leads every page token, so that a later format
	// can tell old tokens apart.
	searchTokenVersion = 1
)

var (
	errSearchNoWords    = connect.NewError(connect.CodeInvalidArgument, "query: must contain a letter or digit")
	errSearchBadToken   = connect.NewError(connect.CodeInvalidArgument, "page_token: not a page token of this server")
	errSearchOtherQuery = connect.NewError(connect.CodeInvalidArgument, "page_token: belongs to a different query, conversation_id, from or to")
)

// SearchMessages finds messages by their words (see storage.SearchStore
// for what is found; the store enforces membership and join points).
// Validation comes first and reads nothing but the caller's membership, so
// a bad request changes nothing.
func (c *chatService) SearchMessages(ctx context.Context, req *parleyv1.SearchMessagesRequest) (*parleyv1.SearchMessagesResponse, error) {
	id := mustIdentity(ctx)
	s := c.s
	terms := textsearch.Terms(req.GetQuery())
	if len(terms) == 0 {
		return nil, errSearchNoWords
	}
	q := storage.SearchQuery{UserID: id.UserID, Terms: terms, ConversationID: req.GetConversationId()}
	var err error
	if q.From, err = optTime(req.GetFrom(), "from"); err != nil {
		return nil, err
	}
	if q.To, err = optTime(req.GetTo(), "to"); err != nil {
		return nil, err
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return nil, connect.NewError(connect.CodeInvalidArgument, "to: must be after from")
	}
	q.Limit = int(req.GetPageSize())
	if q.Limit == 0 {
		q.Limit = defaultSearchPageSize
	}
	fp := searchFingerprint(req)
	if tok := req.GetPageToken(); tok != "" {
		after, err := decodeSearchToken(tok, fp)
		if err != nil {
			return nil, err
		}
		q.After = &after
	}
	if q.ConversationID != "" {
		// The store would find nothing; the caller is told why.
		if _, err := s.store.GetMember(ctx, q.ConversationID, id.UserID); err != nil {
			return nil, toConnect(ctx, s.logger, "SearchMessages", err)
		}
	}
	hits, more, err := s.store.SearchMessages(ctx, q)
	if err != nil {
		return nil, toConnect(ctx, s.logger, "SearchMessages", err)
	}
	res := &parleyv1.SearchMessagesResponse{Results: make([]*parleyv1.SearchResult, len(hits))}
	for i, h := range hits {
		snippet, hl := textsearch.Snippet(h.Text, terms, snippetRunes)
		r := &parleyv1.SearchResult{
			ConversationId: h.Message.ConversationID,
			Seq:            h.Message.Seq,
			MessageId:      h.Message.ID,
			SenderId:       h.Message.SenderID,
			CreatedAt:      wire.Time(h.Message.CreatedAt),
			Kind:           parleyv1.MessageKind(h.Message.Kind),
			Snippet:        snippet,
			Highlights:     make([]*parleyv1.TextRange, len(hl)),
		}
		for j, rg := range hl {
			r.Highlights[j] = &parleyv1.TextRange{Start: uint32(rg.Start), End: uint32(rg.End)} //nolint:gosec // bounded by snippetRunes
		}
		res.Results[i] = r
	}
	if more && len(hits) > 0 {
		res.NextPageToken = encodeSearchToken(hits[len(hits)-1].Cursor(), fp)
	}
	return res, nil
}

// optTime converts an optional request time; an invalid one is
// InvalidArgument naming field.
func optTime(ts *timestamppb.Timestamp, field string) (time.Time, error) {
	if ts == nil {
		return time.Time{}, nil
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, connect.NewError(connect.CodeInvalidArgument, field+": not a valid timestamp")
	}
	return ts.AsTime(), nil
}

// searchFingerprint identifies what a page token may continue: the same
// query, conversation and time range.
func searchFingerprint(req *parleyv1.SearchMessagesRequest) uint64 {
	h := fnv.New64a()
	for _, s := range []string{req.GetQuery(), req.GetConversationId()} {
		_, _ = h.Write([]byte(s))
		_, _ = h.Write([]byte{0})
	}
	for _, ts := range []*timestamppb.Timestamp{req.GetFrom(), req.GetTo()} {
		var b [12]byte
		if ts != nil {
			binary.BigEndian.PutUint64(b[:8], uint64(ts.GetSeconds())) //nolint:gosec // bits, not a value
			binary.BigEndian.PutUint32(b[8:], uint32(ts.GetNanos()))   //nolint:gosec // bits, not a value
		}
		_, _ = h.Write(b[:])
	}
	return h.Sum64()
}

// encodeSearchToken writes the position of a page's last hit and the
// query's fingerprint: version, fingerprint (8 bytes), created_at in unix
// milliseconds and seq (varints), then the conversation id, all in
// unpadded base64url. It is not secret or signed: a forged token can only
// move the start of a search the store limits to the caller's own
// conversations anyway.
func encodeSearchToken(c storage.SearchCursor, fp uint64) string {
	b := []byte{searchTokenVersion}
	b = binary.BigEndian.AppendUint64(b, fp)
	b = binary.AppendVarint(b, c.CreatedAt.UnixMilli())
	b = binary.AppendUvarint(b, c.Seq)
	b = append(b, c.ConversationID...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeSearchToken is the inverse of encodeSearchToken; it fails with
// InvalidArgument naming page_token.
func decodeSearchToken(tok string, fp uint64) (storage.SearchCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 9 || b[0] != searchTokenVersion {
		return storage.SearchCursor{}, errSearchBadToken
	}
	if binary.BigEndian.Uint64(b[1:9]) != fp {
		return storage.SearchCursor{}, errSearchOtherQuery
	}
	r := bytes.NewReader(b[9:])
	msec, err1 := binary.ReadVarint(r)
	seq, err2 := binary.ReadUvarint(r)
	if err := errors.Join(err1, err2); err != nil || r.Len() == 0 || r.Len() > 64 {
		return storage.SearchCursor{}, errSearchBadToken
	}
	conv := string(b[len(b)-r.Len():])
	return storage.SearchCursor{CreatedAt: time.UnixMilli(msec).UTC(), ConversationID: conv, Seq: seq}, nil
}
