package clickhouse_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/clickhouse"
	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// server is the ClickHouse every test shares (each in its own database),
// except those that halt or restart one.
var server *realsvc.ClickHouse

func TestMain(m *testing.M) {
	var err error
	server, err = realsvc.StartClickHouse()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := server.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// testConfig is a Config for database db of srv.
func testConfig(srv *realsvc.ClickHouse, db string) clickhouse.Config {
	return clickhouse.Config{
		Addrs:       []string{srv.Addr()},
		Database:    db,
		DialTimeout: 5 * time.Second,
		CallTimeout: 20 * time.Second,
	}
}

// open opens a DB on cfg and closes it in t.Cleanup.
func open(t *testing.T, cfg clickhouse.Config) *clickhouse.DB {
	t.Helper()
	db, err := clickhouse.Open(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

// openTB opens a DB on database name of the shared server for a test or
// benchmark and closes it in tb.Cleanup.
func openTB(tb testing.TB, name string) (*clickhouse.DB, error) {
	db, err := clickhouse.Open(context.Background(), testConfig(server, name))
	if err != nil {
		return nil, err
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db, nil
}

// newDB opens a DB on a fresh database of the shared server and returns
// the database's name too.
func newDB(t *testing.T) (*clickhouse.DB, string) {
	t.Helper()
	name := server.NewDatabase(t)
	return open(t, testConfig(server, name)), name
}

// testMessages are n messages of conversation conv, seqs from first on,
// with sub-second timestamps (the archive must keep them exactly).
func testMessages(conv string, first uint64, n int) []clickhouse.ArchivedMessage {
	base := time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)
	out := make([]clickhouse.ArchivedMessage, n)
	for i := range out {
		seq := first + uint64(i)
		out[i] = clickhouse.ArchivedMessage{
			ConversationID: conv,
			Seq:            seq,
			ID:             fmt.Sprintf("m-%s-%d", conv, seq),
			SenderID:       "u-alice",
			SenderDeviceID: "d-phone",
			ClientMsgID:    fmt.Sprintf("c-%d", seq),
			Kind:           storage.MessageText,
			Body:           fmt.Appendf(nil, "hello %d, ünïcode ✓", seq),
			SearchText:     fmt.Sprintf("Hello %d, ünïcode ✓", seq),
			CreatedAt:      base.Add(time.Duration(seq) * time.Millisecond),
		}
	}
	return out
}

// rawCount counts the physical rows of db.messages (without FINAL),
// through the HTTP interface, outside the package under test.
func rawCount(t *testing.T, srv *realsvc.ClickHouse, db string) string {
	t.Helper()
	n, err := srv.Query(context.Background(), "SELECT count() FROM "+db+".messages")
	require.NoError(t, err)
	return n
}
