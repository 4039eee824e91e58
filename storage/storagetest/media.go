package storagetest

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

var mediaTests = []test{
	{"create_get", testMediaCreateGet},
	{"create_conflict", testMediaConflict},
	{"media_id_round_trip", testMediaIDRoundTrip},
	{"can_read_uploader_and_strangers", testCanReadUploader},
	{"can_read_members", testCanReadMembers},
	{"can_read_removed_member", testCanReadRemovedMember},
	{"can_read_recalled", testCanReadRecalled},
	{"sweep_unreferenced", testSweepUnreferenced},
	{"sweep_spares_referenced_and_recent", testSweepSpares},
	{"sweep_shared_blob", testSweepSharedBlob},
	{"sweep_touch_protects", testSweepTouch},
	{"sweep_limit", testSweepLimit},
	{"sweep_concurrent_once", testSweepConcurrent},
}

// media records an upload by uploader, created at(sec), of the bytes
// under blobKey with the thumbnail under thumbKey ("" for none).
func (f *fixture) media(uploader storage.User, blobKey, thumbKey string, sec int) storage.Media {
	f.t.Helper()
	m := storage.Media{
		ID: newID("media"), UploaderID: uploader.ID, BlobKey: blobKey, Size: 1234,
		ContentType: "application/pdf", FileName: "report.pdf", CreatedAt: at(sec),
	}
	if thumbKey != "" {
		m.ContentType, m.FileName = "image/jpeg", "photo.jpg"
		m.Width, m.Height = 4000, 3000
		m.ThumbKey, m.ThumbSize, m.ThumbContentType = thumbKey, 56, "image/webp"
		m.ThumbWidth, m.ThumbHeight = 320, 240
	}
	require.NoError(f.t, f.s.CreateMedia(f.ctx(), m))
	return m
}

// withMedia is a message from sender to c carrying media m.
func withMedia(c storage.Conversation, sender storage.User, m storage.Media) storage.NewMessage {
	msg := text(c, sender, "")
	msg.Kind, msg.Body, msg.MediaID = storage.MessageImage, []byte("caption"), m.ID
	return msg
}

// canRead asks CanReadMedia and requires no error.
func (f *fixture) canRead(u storage.User, m storage.Media) bool {
	f.t.Helper()
	ok, err := f.s.CanReadMedia(f.ctx(), u.ID, m.ID)
	require.NoError(f.t, err)
	return ok
}

// sweep runs SweepMedia with the cutoff at(olderThanSec) and returns the
// dead keys, sorted (empty, not nil, when there are none).
func (f *fixture) sweep(olderThanSec, limit int) []string {
	f.t.Helper()
	dead, err := f.s.SweepMedia(f.ctx(), at(olderThanSec), limit)
	require.NoError(f.t, err)
	out := append([]string{}, dead...)
	slices.Sort(out)
	return out
}

// exists reports whether the media record is still there.
func (f *fixture) exists(m storage.Media) bool {
	f.t.Helper()
	_, err := f.s.GetMedia(f.ctx(), m.ID)
	if err != nil {
		require.ErrorIs(f.t, err, storage.ErrNotFound)
		return false
	}
	return true
}

func testMediaCreateGet(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	u := f.user()
	for _, m := range []storage.Media{
		f.media(u, "blob-file", "", 0),
		f.media(u, "blob-image", "blob-thumb", 1),
	} {
		got, err := s.GetMedia(f.ctx(), m.ID)
		require.NoError(t, err)
		require.Equal(t, m, got)
	}

	// Every field at its widest.
	wide := storage.Media{
		ID: newID("media"), UploaderID: u.ID, BlobKey: "blob-wide", Size: math.MaxInt64,
		ContentType: "image/png", Width: math.MaxUint32, Height: math.MaxUint32,
		ThumbKey: "blob-wide-thumb", ThumbSize: math.MaxInt64, ThumbContentType: "image/webp",
		ThumbWidth: math.MaxUint32, ThumbHeight: math.MaxUint32, CreatedAt: at(2),
	}
	require.NoError(t, s.CreateMedia(f.ctx(), wide))
	got, err := s.GetMedia(f.ctx(), wide.ID)
	require.NoError(t, err)
	require.Equal(t, wide, got)

	_, err = s.GetMedia(f.ctx(), "nothing")
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func testMediaConflict(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	u, v := f.user(), f.user()
	m := f.media(u, "blob-a", "", 0)

	again := m
	again.UploaderID, again.BlobKey, again.FileName = v.ID, "blob-b", "other.pdf"
	require.ErrorIs(t, s.CreateMedia(f.ctx(), again), storage.ErrConflict)
	got, err := s.GetMedia(f.ctx(), m.ID)
	require.NoError(t, err)
	require.Equal(t, m, got, "the first record stands")

	// The refused record marked nothing: once the first is swept, only
	// its key comes back (blob-b was never recorded).
	require.Equal(t, []string{"blob-a"}, f.sweep(100, 10))
}

func testMediaIDRoundTrip(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()
	d := f.direct(a, b)
	m := f.media(a, "blob", "thumb", 0)

	plain := text(d, a, "no media")
	in := withMedia(d, a, m)
	res := f.append(plain, in)
	require.Equal(t, committed(plain, 1), res[0])
	require.Empty(t, res[0].MediaID)
	sent := res[1]
	require.Equal(t, committed(in, 2), sent)
	require.Equal(t, m.ID, sent.MediaID)

	got, err := s.GetMessage(f.ctx(), d.ID, 2)
	require.NoError(t, err)
	require.Equal(t, sent, got)
	page, _, err := s.History(f.ctx(), storage.HistoryQuery{ConversationID: d.ID, Direction: storage.After, Limit: 10})
	require.NoError(t, err)
	require.Equal(t, res, page)
	sums, err := s.ListConversations(f.ctx(), b.ID)
	require.NoError(t, err)
	require.Len(t, sums, 1)
	require.NotNil(t, sums[0].LastMessage)
	require.Equal(t, sent, *sums[0].LastMessage)

	// A retry gets the original, media included, even when it names none.
	retry := in
	retry.ID, retry.MediaID = newID("msg"), ""
	dups, err := s.AppendMessages(f.ctx(), []storage.NewMessage{retry})
	require.NoError(t, err)
	require.True(t, dups[0].Duplicate)
	require.Equal(t, sent, dups[0].Message)

	// A batch mixing media and none, media not first.
	batch := f.append(text(d, b, "x"), withMedia(d, b, m), text(d, a, "y"))
	require.Equal(t, []string{"", m.ID, ""}, []string{batch[0].MediaID, batch[1].MediaID, batch[2].MediaID})
	page, _, err = s.History(f.ctx(), storage.HistoryQuery{ConversationID: d.ID, Direction: storage.After, Anchor: 2, Limit: 10})
	require.NoError(t, err)
	require.Equal(t, batch, page)

	// A recall keeps the reference (it then grants nothing).
	recalled, _, err := s.RecallMessage(f.ctx(), d.ID, 2, f.notice(a, 60))
	require.NoError(t, err)
	require.Equal(t, m.ID, recalled.MediaID)
	got, err = s.GetMessage(f.ctx(), d.ID, 2)
	require.NoError(t, err)
	require.Equal(t, m.ID, got.MediaID)
}

func testCanReadUploader(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	u, stranger := f.user(), f.user()
	m := f.media(u, "blob", "", 0)

	require.True(t, f.canRead(u, m), "the uploader, before any message")
	require.False(t, f.canRead(stranger, m), "exists, but not for them")
	for _, who := range []storage.User{u, stranger} {
		_, err := s.CanReadMedia(f.ctx(), who.ID, "nothing")
		require.ErrorIs(t, err, storage.ErrNotFound)
	}
}

func testCanReadMembers(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner, b, late, stranger, peer := f.user(), f.user(), f.user(), f.user(), f.user()
	g, _ := f.group(owner, b)
	m := f.media(b, "blob", "thumb", 0)
	other := f.media(b, "blob-2", "", 0)

	f.append(withMedia(g, b, m))
	require.True(t, f.canRead(owner, m), "a member who joined before the message")
	require.True(t, f.canRead(b, m))
	require.False(t, f.canRead(stranger, m), "not a member")
	require.False(t, f.canRead(owner, other), "a message references another media")

	_, err := s.AddMembers(f.ctx(), g.ID, []string{late.ID}, 0, f.notice(owner, 20))
	require.NoError(t, err)
	require.False(t, f.canRead(late, m), "joined after the message")

	// The same media sent again, after the join, is theirs to read.
	f.append(withMedia(g, owner, m))
	require.True(t, f.canRead(late, m))

	// A direct conversation, too.
	d := f.direct(b, peer)
	require.False(t, f.canRead(peer, other))
	f.append(withMedia(d, b, other))
	require.True(t, f.canRead(peer, other))
}

func testCanReadRemovedMember(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner, b, c := f.user(), f.user(), f.user()
	g, _ := f.group(owner, b, c)
	m := f.media(owner, "blob", "", 0)
	f.append(withMedia(g, owner, m))
	require.True(t, f.canRead(c, m))

	_, err := s.RemoveMember(f.ctx(), g.ID, c.ID, f.notice(owner, 30))
	require.NoError(t, err)
	require.False(t, f.canRead(c, m), "no longer a member")
	require.True(t, f.canRead(b, m))
}

func testCanReadRecalled(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner, b := f.user(), f.user()
	g, _ := f.group(owner, b)
	m := f.media(owner, "blob", "", 0)
	sent := f.append(withMedia(g, owner, m))[0]
	require.True(t, f.canRead(b, m))

	_, _, err := s.RecallMessage(f.ctx(), g.ID, sent.Seq, f.notice(owner, 30))
	require.NoError(t, err)
	require.False(t, f.canRead(b, m), "the recalled message grants nothing")
	require.True(t, f.canRead(owner, m), "the uploader still can")
}

func testSweepUnreferenced(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	u, peer := f.user(), f.user()
	d := f.direct(u, peer)
	file := f.media(u, "blob-file", "", 0)
	image := f.media(u, "blob-image", "blob-thumb", 0)
	recalled := f.media(u, "blob-recalled", "", 0)
	sent := f.append(withMedia(d, u, recalled))[0]
	_, _, err := s.RecallMessage(f.ctx(), d.ID, sent.Seq, f.notice(u, 30))
	require.NoError(t, err)

	require.Equal(t, []string{"blob-file", "blob-image", "blob-recalled", "blob-thumb"}, f.sweep(100, 10),
		"bytes and thumbnails of unreferenced uploads; a recalled message does not count")
	for _, m := range []storage.Media{file, image, recalled} {
		require.False(t, f.exists(m), m.ID)
	}
	require.Equal(t, []string{}, f.sweep(100, 10), "a forgotten key is never returned twice")
	require.Equal(t, []string{}, f.sweep(10_000, 10))

	// The message keeps its reference to the swept media.
	got, err := s.GetMessage(f.ctx(), d.ID, sent.Seq)
	require.NoError(t, err)
	require.Equal(t, recalled.ID, got.MediaID)
	_, err = s.CanReadMedia(f.ctx(), peer.ID, recalled.ID)
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func testSweepSpares(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	u, peer := f.user(), f.user()
	d := f.direct(u, peer)
	referenced := f.media(u, "blob-referenced", "thumb-referenced", 0)
	f.append(withMedia(d, u, referenced))
	recent := f.media(u, "blob-recent", "", 100)

	require.Equal(t, []string{}, f.sweep(100, 10), "referenced, or created at the cutoff")
	require.True(t, f.exists(referenced))
	require.True(t, f.exists(recent))
	require.True(t, f.canRead(peer, referenced))

	require.Equal(t, []string{"blob-recent"}, f.sweep(101, 10), "once past the cutoff")
	require.False(t, f.exists(recent))
	require.True(t, f.exists(referenced))
}

func testSweepSharedBlob(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	u, v := f.user(), f.user()
	d := f.direct(u, v)
	// The same bytes uploaded twice (by two users), and a third upload
	// whose thumbnail is those bytes too.
	first := f.media(u, "blob-shared", "", 0)
	second := f.media(v, "blob-shared", "", 0)
	third := f.media(v, "blob-third", "blob-shared", 0)
	sent := f.append(withMedia(d, v, second), withMedia(d, v, third))

	require.Equal(t, []string{}, f.sweep(100, 10), "the other records still use it")
	require.False(t, f.exists(first))

	_, _, err := s.RecallMessage(f.ctx(), d.ID, sent[0].Seq, f.notice(v, 30))
	require.NoError(t, err)
	require.Equal(t, []string{}, f.sweep(100, 10), "still a thumbnail")
	require.False(t, f.exists(second))

	_, _, err = s.RecallMessage(f.ctx(), d.ID, sent[1].Seq, f.notice(v, 31))
	require.NoError(t, err)
	require.Equal(t, []string{"blob-shared", "blob-third"}, f.sweep(100, 10), "returned once all are gone")
	require.Equal(t, []string{}, f.sweep(100, 10))
}

func testSweepTouch(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	u := f.user()
	old := f.media(u, "blob-old", "thumb-old", 0)

	// An upload of the same bytes is under way: their key is marked
	// before they are written, and with it a key no record uses yet.
	require.NoError(t, s.TouchBlobs(f.ctx(), []string{"blob-old", "blob-new", "blob-new", ""}, at(200)))
	require.Equal(t, []string{"thumb-old"}, f.sweep(100, 10), "the touched keys are spared")
	require.False(t, f.exists(old), "the record goes all the same")

	// An earlier mark does not move a key's back.
	require.NoError(t, s.TouchBlobs(f.ctx(), []string{"blob-old"}, at(50)))
	require.Equal(t, []string{}, f.sweep(150, 10))

	// Nor does a record created with an earlier time: swept as old and
	// unreferenced, it leaves its key marked at(200).
	again := f.media(u, "blob-new", "", 10)
	require.Equal(t, []string{}, f.sweep(150, 10))
	require.False(t, f.exists(again))

	require.Equal(t, []string{"blob-new", "blob-old"}, f.sweep(201, 10))
	require.NoError(t, s.TouchBlobs(f.ctx(), nil, at(300)), "nothing to mark")
}

func testSweepLimit(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	u := f.user()
	ms := []storage.Media{
		f.media(u, "blob-2", "", 2),
		f.media(u, "blob-0", "", 0),
		f.media(u, "blob-1", "", 1),
	}

	require.Equal(t, []string{}, f.sweep(100, 0), "a limit of 0 deletes no record")
	require.Equal(t, []string{"blob-0", "blob-1"}, f.sweep(100, 2), "the oldest first")
	require.True(t, f.exists(ms[0]))
	require.Equal(t, []string{"blob-2"}, f.sweep(100, 2))
}

// testSweepConcurrent runs sweeps side by side (the sweeper of every
// process of a cluster) while uploads of the same bytes mark their keys:
// every dead key is handed to exactly one sweep, and no key marked before
// the sweeps began is handed out.
func testSweepConcurrent(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	u := f.user()
	const n = 40
	want := make([]string, 0, n)
	for i := range n {
		key := fmt.Sprintf("blob-%02d", i)
		f.media(u, key, "", 0)
		want = append(want, key)
	}
	// Re-uploads of some of the bytes, marked in use before the sweeps.
	require.NoError(t, s.TouchBlobs(f.ctx(), []string{"blob-00", "blob-17", "blob-39"}, at(200)))
	want = slices.DeleteFunc(want, func(k string) bool { return k == "blob-00" || k == "blob-17" || k == "blob-39" })

	const sweepers = 4
	got := make([][]string, sweepers)
	errs := make(chan error, sweepers+1)
	var wg sync.WaitGroup
	for i := range sweepers {
		wg.Go(func() {
			for range 100 {
				dead, err := s.SweepMedia(f.ctx(), at(100), 3)
				if err != nil {
					errs <- err
					return
				}
				if len(dead) == 0 {
					return
				}
				got[i] = append(got[i], dead...)
			}
		})
	}
	// Uploads going on meanwhile, with keys of their own.
	wg.Go(func() {
		for i := range 10 {
			m := storage.Media{ID: newID("media"), UploaderID: u.ID, BlobKey: fmt.Sprintf("fresh-%d", i), CreatedAt: at(150)}
			if err := s.TouchBlobs(f.ctx(), []string{m.BlobKey, "blob-17"}, at(150)); err != nil {
				errs <- err
				return
			}
			if err := s.CreateMedia(f.ctx(), m); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	all := slices.Concat(append(got, f.sweep(100, n))...)
	slices.Sort(all)
	require.Equal(t, want, all, "each dead key once, the marked ones spared")
}
