package clickhouse_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/clickhouse"
)

func TestWriteMessages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("round_trip", func(t *testing.T) {
		t.Parallel()
		db, _ := newDB(t)
		in := testMessages("c1", 1, 5)
		in[1].MediaID = "media-1"
		in[1].Body = nil
		in[2].EditedAt = in[2].CreatedAt.Add(time.Minute + 7)
		in[2].Version = 42
		require.NoError(t, db.WriteMessages(ctx, in))
		require.NoError(t, db.WriteMessages(ctx, testMessages("c2", 1, 3)), "another conversation")

		got, err := db.Messages(ctx, "c1", 1, 100, 0)
		require.NoError(t, err)
		want := append([]clickhouse.ArchivedMessage(nil), in...)
		for i := range want {
			if want[i].Version == 0 {
				want[i].Version = clickhouse.StateVersion(want[i])
			}
		}
		require.Equal(t, want, got, "every field, timestamps to the nanosecond")

		got, err = db.Messages(ctx, "c1", 2, 4, 2)
		require.NoError(t, err)
		require.Len(t, got, 2, "limit")
		require.Equal(t, []uint64{2, 3}, []uint64{got[0].Seq, got[1].Seq}, "range from fromSeq, in seq order")
		got, err = db.Messages(ctx, "c3", 1, 100, 0)
		require.NoError(t, err)
		require.Empty(t, got)
	})

	t.Run("named_columns_rows_arrive", func(t *testing.T) {
		t.Parallel()
		// Without column names in the INSERT, the driver sends nothing
		// and reports success: count what the server has.
		db, name := newDB(t)
		const n = 1000
		require.NoError(t, db.WriteMessages(ctx, testMessages("c1", 1, n)))
		require.Equal(t, strconv.Itoa(n), rawCount(t, server, name))
		count, err := db.Count(ctx)
		require.NoError(t, err)
		require.EqualValues(t, n, count)
	})

	t.Run("replay_reads_once", func(t *testing.T) {
		t.Parallel()
		db, name := newDB(t)
		// Background merges would collapse the copies too; stopped, only
		// FINAL can.
		require.NoError(t, server.Exec(ctx, "SYSTEM STOP MERGES "+name+".messages"))
		batch := testMessages("c1", 1, 100)
		require.NoError(t, db.WriteMessages(ctx, batch))
		require.NoError(t, db.WriteMessages(ctx, batch), "a replay after a crash")
		require.Equal(t, "200", rawCount(t, server, name), "both copies are stored")
		count, err := db.Count(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 100, count, "FINAL collapses the replay")
		got, err := db.Messages(ctx, "c1", 1, 1000, 0)
		require.NoError(t, err)
		require.Len(t, got, 100)
		for i, m := range got {
			require.EqualValues(t, i+1, m.Seq)
		}
	})

	t.Run("recall_replaces_earlier_state", func(t *testing.T) {
		t.Parallel()
		db, _ := newDB(t)
		batch := testMessages("c1", 1, 3)
		require.NoError(t, db.WriteMessages(ctx, batch))

		recall := batch[1]
		recall.RecalledAt = recall.CreatedAt.Add(time.Second)
		// The body is still set: WriteMessages must not archive it.
		require.NoError(t, db.WriteMessages(ctx, []clickhouse.ArchivedMessage{recall}))
		// The earlier state arrives again later (a replay): it must lose.
		require.NoError(t, db.WriteMessages(ctx, batch))

		got, err := db.Messages(ctx, "c1", 1, 3, 0)
		require.NoError(t, err)
		require.Len(t, got, 3)
		require.Empty(t, got[1].Body, "a recalled message's content is gone")
		require.Empty(t, got[1].SearchText, "and its text")
		require.Equal(t, recall.RecalledAt, got[1].RecalledAt)
		require.Equal(t, clickhouse.StateVersion(recall), got[1].Version)
		require.Equal(t, batch[0].Body, got[0].Body, "other messages keep theirs")
		require.Equal(t, batch[0].SearchText, got[0].SearchText)
		require.Equal(t, batch[2].Body, got[2].Body)
	})

	t.Run("invalid_input_sends_nothing", func(t *testing.T) {
		t.Parallel()
		db, name := newDB(t)
		for _, tc := range []struct {
			name   string
			mutate func(*clickhouse.ArchivedMessage)
			want   string
		}{
			{name: "no_conversation", mutate: func(m *clickhouse.ArchivedMessage) { m.ConversationID = "" }, want: "empty conversation id"},
			{name: "seq_0", mutate: func(m *clickhouse.ArchivedMessage) { m.Seq = 0 }, want: "seq 0"},
			{name: "no_created_at", mutate: func(m *clickhouse.ArchivedMessage) { m.CreatedAt = time.Time{} }, want: "zero created_at"},
			{name: "before_1970", mutate: func(m *clickhouse.ArchivedMessage) { m.CreatedAt = time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC) }, want: "created_at 1969-01-01T00:00:00Z outside DateTime's range"},
		} {
			batch := testMessages("c1", 1, 3)
			tc.mutate(&batch[2])
			err := db.WriteMessages(ctx, batch)
			require.ErrorContains(t, err, "message 2: "+tc.want, tc.name)
		}
		require.Equal(t, "0", rawCount(t, server, name))
		require.NoError(t, db.WriteMessages(ctx, nil), "an empty batch is a no-op")
	})

	t.Run("closed", func(t *testing.T) {
		t.Parallel()
		name := server.NewDatabase(t)
		db, err := clickhouse.Open(ctx, testConfig(server, name))
		require.NoError(t, err)
		require.NoError(t, db.Close())
		require.NoError(t, db.Close(), "Close is idempotent")
		require.ErrorIs(t, db.WriteMessages(ctx, testMessages("c1", 1, 1)), storage.ErrUnavailable)
		_, err = db.Count(ctx)
		require.ErrorIs(t, err, storage.ErrUnavailable)
	})
}
