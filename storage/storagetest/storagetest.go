// Package storagetest is the conformance suite of storage.Store: every
// backend's tests call Run, so every backend keeps the same contract.
//
// The suite asserts only what storage.go documents. Behaviour a backend
// owns alone (files, schemas, reopening) is tested in the backend's package.
package storagetest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

// test is one conformance test; it gets a fresh, empty store.
type test struct {
	name string
	fn   func(t *testing.T, s storage.Store)
}

// Run runs the conformance suite. newStore must return a fresh, empty store
// for each call (a file in t.TempDir(), a unique schema); subtests run in
// parallel, each with its own store. Run closes each store when its subtest
// ends (Close must be idempotent); cleanups newStore registers with
// t.Cleanup run after that.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	groups := []struct {
		name  string
		tests []test
	}{
		{"users", userTests},
		{"devices", deviceTests},
		{"conversations", conversationTests},
		{"members", memberTests},
		{"members_seq", membersSeqTests},
		{"messages", messageTests},
		{"history", historyTests},
		{"cursors", cursorTests},
		{"media", mediaTests},
		{"search", searchTests},
		{"lifecycle", lifecycleTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					s := newStore(t)
					t.Cleanup(func() { _ = s.Close() })
					tc.fn(t, s)
				})
			}
		})
	}
}

// t0 is the suite's clock. It has millisecond precision, the least a
// backend keeps, so times compare equal after a round trip.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123_000_000, time.UTC)

// at is t0 plus n seconds.
func at(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

var idSeq atomic.Uint64

// newID returns an id unique in the test binary.
func newID(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, idSeq.Add(1))
}

// fixture builds a store's state for one test. Its methods fail the test
// on error, so they are called from the test goroutine only.
type fixture struct {
	t *testing.T
	s storage.Store
}

func newFixture(t *testing.T, s storage.Store) *fixture {
	return &fixture{t: t, s: s}
}

// ctx is the test's context.
func (f *fixture) ctx() context.Context { return f.t.Context() }

// user creates a user.
func (f *fixture) user() storage.User {
	f.t.Helper()
	id := newID("user")
	u := storage.User{ID: id, Username: "name-" + id, DisplayName: "User " + id, PasswordHash: "$argon2id$v=19$x", CreatedAt: at(0)}
	require.NoError(f.t, f.s.CreateUser(f.ctx(), u))
	return u
}

// users creates n users.
func (f *fixture) users(n int) []storage.User {
	f.t.Helper()
	us := make([]storage.User, n)
	for i := range us {
		us[i] = f.user()
	}
	return us
}

// device creates a device of u with a first token hash, live for an hour
// after at(0).
func (f *fixture) device(u storage.User, hash []byte) storage.Device {
	f.t.Helper()
	d := storage.Device{ID: newID("device"), UserID: u.ID, Name: "phone", CreatedAt: at(0)}
	require.NoError(f.t, f.s.CreateDevice(f.ctx(), d, storage.RefreshToken{Hash: hash, DeviceID: d.ID, ExpiresAt: at(3600)}))
	return d
}

// direct returns the direct conversation of a and b.
func (f *fixture) direct(a, b storage.User) storage.Conversation {
	f.t.Helper()
	c, _, err := f.s.GetOrCreateDirect(f.ctx(), newID("direct"), a.ID, b.ID, at(0))
	require.NoError(f.t, err)
	return c
}

// group creates a group of owner and members, without a size limit.
func (f *fixture) group(owner storage.User, members ...storage.User) (storage.Conversation, storage.Message) {
	f.t.Helper()
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.ID
	}
	c, n, err := f.s.CreateGroup(f.ctx(), storage.NewGroup{
		ID: newID("group"), Title: "team", OwnerID: owner.ID, MemberIDs: ids,
		CreatedAt: at(0), MaxMembers: 100, Notice: f.notice(owner, 0),
	})
	require.NoError(f.t, err)
	return c, n
}

// notice is a system message by sender, created at(sec).
func (f *fixture) notice(sender storage.User, sec int) storage.NewMessage {
	return storage.NewMessage{
		ID: newID("notice"), SenderID: sender.ID, Kind: storage.MessageSystem,
		Body: []byte("notice"), CreatedAt: at(sec),
	}
}

// text is a text message from sender to c with a fresh client_msg_id.
func text(c storage.Conversation, sender storage.User, body string) storage.NewMessage {
	return storage.NewMessage{
		ID: newID("msg"), ConversationID: c.ID, SenderID: sender.ID, SenderDeviceID: "dev-" + sender.ID,
		ClientMsgID: newID("cmid"), Kind: storage.MessageText, Body: []byte(body), CreatedAt: at(10),
	}
}

// append appends msgs and requires every one to commit.
func (f *fixture) append(msgs ...storage.NewMessage) []storage.Message {
	f.t.Helper()
	res, err := f.s.AppendMessages(f.ctx(), msgs)
	require.NoError(f.t, err)
	require.Len(f.t, res, len(msgs))
	out := make([]storage.Message, len(res))
	for i, r := range res {
		require.NoError(f.t, r.Err)
		out[i] = r.Message
	}
	return out
}

// send appends n text messages from sender to c, one call each.
func (f *fixture) send(c storage.Conversation, sender storage.User, n int) []storage.Message {
	f.t.Helper()
	out := make([]storage.Message, 0, n)
	for i := range n {
		out = append(out, f.append(text(c, sender, fmt.Sprintf("hello %d", i)))...)
	}
	return out
}

// committed is m as the store returns it after committing it at seq.
func committed(m storage.NewMessage, seq uint64) storage.Message {
	return storage.Message{
		ID: m.ID, ConversationID: m.ConversationID, Seq: seq, SenderID: m.SenderID,
		SenderDeviceID: m.SenderDeviceID, ClientMsgID: m.ClientMsgID, Kind: m.Kind,
		Body: m.Body, MediaID: m.MediaID, CreatedAt: m.CreatedAt,
	}
}

// membershipNotice is m as the store returns it after committing it at seq
// as the notice of a membership change: the change's seq is its own.
func membershipNotice(m storage.NewMessage, seq uint64) storage.Message {
	msg := committed(m, seq)
	msg.MembersSeq = seq
	return msg
}

// asRead is m as the reads (GetMessage, History, ListConversations) return
// it: they do not report MembersSeq.
func asRead(m storage.Message) storage.Message {
	m.MembersSeq = 0
	return m
}

// seqs lists the seqs of msgs.
func seqs(msgs []storage.Message) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}

// span is lo..hi inclusive.
func span(lo, hi uint64) []uint64 {
	out := []uint64{}
	for s := lo; s <= hi; s++ {
		out = append(out, s)
	}
	return out
}
