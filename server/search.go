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
	// can tell old tokens apart. Version 2 added the tier (window or
	// archive).
	searchTokenVersion = 2
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
	pos := searchPosition{tier: tierWindow}
	if tok := req.GetPageToken(); tok != "" {
		if pos, err = decodeSearchToken(tok, fp); err != nil {
			return nil, err
		}
	}
	if q.ConversationID != "" {
		// The store would find nothing; the caller is told why.
		if _, err := s.store.GetMember(ctx, q.ConversationID, id.UserID); err != nil {
			return nil, toConnect(ctx, s.logger, "SearchMessages", err)
		}
	}
	hits, next, err := s.searchPage(ctx, q, pos)
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
	if next != nil {
		res.NextPageToken = encodeSearchToken(*next, fp)
	}
	return res, nil
}

// searchTier is the part of the history a search page continues in.
type searchTier byte

const (
	// tierWindow is the store's window, after the cursor (or from its
	// newest hit when there is none).
	tierWindow searchTier = 0
	// tierArchive is the archive, after the cursor.
	tierArchive searchTier = 1
	// tierArchiveStart is the archive from its newest hit: the window
	// ended exactly on a page boundary.
	tierArchiveStart searchTier = 2
)

// searchPosition is where the next page starts.
type searchPosition struct {
	tier   searchTier
	cursor *storage.SearchCursor
}

// searchPage returns a page of q's hits from pos, and where the next page
// starts (nil: there is none). Hits come from the store's window first,
// newest first, and then from the archive below it, newest first: the
// window holds the recent weeks, so this is nearly the time order, and a
// page token says which part it continues.
func (s *Server) searchPage(ctx context.Context, q storage.SearchQuery, pos searchPosition) ([]storage.SearchHit, *searchPosition, error) {
	var hits []storage.SearchHit
	if pos.tier == tierWindow {
		q.After = pos.cursor
		var (
			more bool
			err  error
		)
		hits, more, err = s.store.SearchMessages(ctx, q)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case more:
			return hits, &searchPosition{tier: tierWindow, cursor: lastCursor(hits)}, nil
		case s.archive == nil:
			return hits, nil, nil
		case len(hits) >= q.Limit:
			// The page is full: is there anything in the archive?
			probe := q
			probe.After, probe.Limit = nil, 1
			old, _, err := s.archive.SearchArchived(ctx, probe)
			if err == nil && len(old) == 0 {
				return hits, nil, nil
			}
			// On an error the next page will say what is wrong.
			return hits, &searchPosition{tier: tierArchiveStart}, nil
		}
		q.Limit -= len(hits)
		pos = searchPosition{tier: tierArchiveStart}
	}
	if s.archive == nil {
		// A token from a server with an archive.
		return hits, nil, nil
	}
	q.After = pos.cursor
	old, more, err := s.archive.SearchArchived(ctx, q)
	if err != nil {
		if len(hits) == 0 {
			return nil, nil, err
		}
		// The window's hits stand; the next page tries the archive again.
		s.logger.WarnContext(ctx, "search: archive unavailable", "err", err)
		return hits, &searchPosition{tier: tierArchiveStart}, nil
	}
	hits = append(hits, old...)
	if !more || len(old) == 0 {
		return hits, nil, nil
	}
	return hits, &searchPosition{tier: tierArchive, cursor: lastCursor(old)}, nil
}

// lastCursor is the position of the last of hits (not empty).
func lastCursor(hits []storage.SearchHit) *storage.SearchCursor {
	c := hits[len(hits)-1].Cursor()
	return &c
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

// encodeSearchToken writes where the next page starts and the query's
// fingerprint: version, fingerprint (8 bytes), tier; then, unless the
// tier starts the archive from its top, the position of the page's last
// hit: created_at in unix milliseconds and seq (varints), then the
// conversation id. All in unpadded base64url. It is not secret or
// signed: a forged token can only move the start of a search the stores
// limit to the caller's own conversations anyway.
func encodeSearchToken(pos searchPosition, fp uint64) string {
	b := []byte{searchTokenVersion}
	b = binary.BigEndian.AppendUint64(b, fp)
	b = append(b, byte(pos.tier))
	if c := pos.cursor; c != nil {
		b = binary.AppendVarint(b, c.CreatedAt.UnixMilli())
		b = binary.AppendUvarint(b, c.Seq)
		b = append(b, c.ConversationID...)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeSearchToken is the inverse of encodeSearchToken; it fails with
// InvalidArgument naming page_token. Tokens of version 1 (before the
// archive) continue in the window.
func decodeSearchToken(tok string, fp uint64) (searchPosition, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 9 || (b[0] != searchTokenVersion && b[0] != 1) {
		return searchPosition{}, errSearchBadToken
	}
	if binary.BigEndian.Uint64(b[1:9]) != fp {
		return searchPosition{}, errSearchOtherQuery
	}
	pos := searchPosition{tier: tierWindow}
	rest := b[9:]
	if b[0] == searchTokenVersion {
		if len(rest) == 0 {
			return searchPosition{}, errSearchBadToken
		}
		pos.tier, rest = searchTier(rest[0]), rest[1:]
		switch pos.tier {
		case tierArchiveStart:
			if len(rest) != 0 {
				return searchPosition{}, errSearchBadToken
			}
			return pos, nil
		case tierWindow, tierArchive:
		default:
			return searchPosition{}, errSearchBadToken
		}
	}
	r := bytes.NewReader(rest)
	msec, err1 := binary.ReadVarint(r)
	seq, err2 := binary.ReadUvarint(r)
	if err := errors.Join(err1, err2); err != nil || r.Len() == 0 || r.Len() > 64 {
		return searchPosition{}, errSearchBadToken
	}
	conv := string(rest[len(rest)-r.Len():])
	pos.cursor = &storage.SearchCursor{CreatedAt: time.UnixMilli(msec).UTC(), ConversationID: conv, Seq: seq}
	return pos, nil
}
