package check_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/loadtest/internal/check"
)

// dm is a direct conversation of users ua and ub holding n messages, sent
// alternately by devices da and db.
func dm(n int) check.Conv {
	c := check.Conv{ID: "c1", Label: "dm a/b", Members: []string{"ua", "ub"}, Owned: true}
	for i := 1; i <= n; i++ {
		sender := "da"
		if i%2 == 0 {
			sender = "db"
		}
		c.Messages = append(c.Messages, check.Message{Seq: uint64(i), ClientMsgID: fmt.Sprint("m", i), SenderDeviceID: sender})
	}
	return c
}

// sends are the acknowledged sends behind dm(n).
func sends(n int) []check.Send {
	var out []check.Send
	for _, m := range dm(n).Messages {
		out = append(out, check.Send{DeviceID: m.SenderDeviceID, Conv: "c1", ClientMsgID: m.ClientMsgID, Seq: m.Seq})
	}
	return out
}

// received records seqs 1..n on a device, skipping skip.
func received(d *check.Device, n int, skip ...uint64) *check.Device {
	for i := 1; i <= n; i++ {
		if !contains(skip, uint64(i)) {
			d.Received("c1", uint64(i))
		}
	}
	return d
}

func contains(s []uint64, v uint64) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		devices func() []*check.Device
		sends   []check.Send
		store   check.Conv
		want    func(t *testing.T, r check.Report)
	}{
		{
			name: "everything_delivered",
			devices: func() []*check.Device {
				return []*check.Device{received(check.NewDevice("a", "ua", "da"), 10), received(check.NewDevice("b", "ub", "db"), 10)}
			},
			sends: sends(10),
			store: dm(10),
			want: func(t *testing.T, r check.Report) {
				require.True(t, r.OK(), r.Violations)
				require.Equal(t, check.Counts{Sent: 10, Acked: 10, FailedBy: map[string]int64{}, Stored: 10, Expected: 20, Delivered: 20}, r.Counts)
			},
		},
		{
			name: "a_lost_message_fails_the_run",
			devices: func() []*check.Device {
				return []*check.Device{received(check.NewDevice("a", "ua", "da"), 10), received(check.NewDevice("b", "ub", "db"), 10, 7)}
			},
			sends: sends(10),
			store: dm(10),
			want: func(t *testing.T, r check.Report) {
				require.False(t, r.OK())
				require.Equal(t, int64(1), r.Counts.Lost)
				require.Len(t, r.Violations, 1)
				require.Contains(t, r.Violations[0], "device b: dm a/b: lost seq 7")
			},
		},
		{
			name: "duplicates_are_counted",
			devices: func() []*check.Device {
				b := received(check.NewDevice("b", "ub", "db"), 10)
				b.Received("c1", 3)
				b.Received("c1", 3)
				return []*check.Device{received(check.NewDevice("a", "ua", "da"), 10), b}
			},
			sends: sends(10),
			store: dm(10),
			want: func(t *testing.T, r check.Report) {
				require.False(t, r.OK())
				require.Equal(t, int64(2), r.Counts.Duplicates)
				require.Equal(t, int64(22), r.Counts.Delivered)
				require.Zero(t, r.Counts.Lost)
			},
		},
		{
			name: "redeliveries_dropped_by_the_client_are_not_violations",
			devices: func() []*check.Device {
				b := received(check.NewDevice("b", "ub", "db"), 10)
				b.Redelivered()
				return []*check.Device{received(check.NewDevice("a", "ua", "da"), 10), b}
			},
			sends: sends(10),
			store: dm(10),
			want: func(t *testing.T, r check.Report) {
				require.True(t, r.OK(), r.Violations)
				require.Equal(t, int64(1), r.Counts.Redelivered)
			},
		},
		{
			name: "an_acknowledged_message_missing_from_the_store_is_lost",
			devices: func() []*check.Device {
				return []*check.Device{received(check.NewDevice("a", "ua", "da"), 9), received(check.NewDevice("b", "ub", "db"), 9)}
			},
			sends: sends(10),
			store: dm(9),
			want: func(t *testing.T, r check.Report) {
				require.False(t, r.OK())
				require.Equal(t, int64(1), r.Counts.AckedLost)
				require.Equal(t, int64(1), r.Counts.Lost)
				require.Contains(t, strings.Join(r.Violations, "\n"), `"m10" to dm a/b was acknowledged as seq 10, which the store does not hold`)
			},
		},
		{
			name: "out_of_order_and_unexpected",
			devices: func() []*check.Device {
				b := check.NewDevice("b", "ub", "db")
				for _, seq := range []uint64{1, 2, 4, 3, 5, 6, 7, 8, 9, 10, 11} {
					b.Received("c1", seq)
				}
				return []*check.Device{received(check.NewDevice("a", "ua", "da"), 10), b}
			},
			sends: sends(10),
			store: dm(10),
			want: func(t *testing.T, r check.Report) {
				require.False(t, r.OK())
				require.Equal(t, int64(1), r.Counts.OutOfOrder)
				require.Equal(t, int64(1), r.Counts.Unexpected)
			},
		},
		{
			name: "a_non_member_receiving_is_unexpected",
			devices: func() []*check.Device {
				return []*check.Device{received(check.NewDevice("a", "ua", "da"), 10), received(check.NewDevice("b", "ub", "db"), 10), received(check.NewDevice("c", "uc", "dc"), 1)}
			},
			sends: sends(10),
			store: dm(10),
			want: func(t *testing.T, r check.Report) {
				require.False(t, r.OK())
				require.Equal(t, int64(1), r.Counts.Unexpected)
			},
		},
		{
			name: "failed_sends_are_counted_not_judged_and_paged_gaps_count_as_received",
			devices: func() []*check.Device {
				b := received(check.NewDevice("b", "ub", "db"), 10, 4, 5)
				b.Filled("c1", 4)
				b.Filled("c1", 5)
				return []*check.Device{received(check.NewDevice("a", "ua", "da"), 10), b}
			},
			sends: append(sends(10), check.Send{DeviceID: "da", Conv: "c1", ClientMsgID: "x", Err: "deadline_exceeded"}),
			store: dm(10),
			want: func(t *testing.T, r check.Report) {
				require.True(t, r.OK(), r.Violations)
				require.Equal(t, int64(1), r.Counts.Failed)
				require.Equal(t, map[string]int64{"deadline_exceeded": 1}, r.Counts.FailedBy)
				require.Equal(t, int64(2), r.Counts.GapFilled)
				require.Equal(t, int64(18), r.Counts.Delivered)
			},
		},
		{
			name: "a_gap_in_the_store_is_a_violation",
			devices: func() []*check.Device {
				return []*check.Device{received(check.NewDevice("a", "ua", "da"), 3)}
			},
			store: check.Conv{ID: "c1", Label: "dm a/b", Members: []string{"ua", "ub"}, Messages: []check.Message{{Seq: 1}, {Seq: 3}}},
			want: func(t *testing.T, r check.Report) {
				require.False(t, r.OK())
				require.Contains(t, r.Violations[0], "seq 3 follows seq 1")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := check.Check([]check.Conv{tt.store}, tt.devices(), tt.sends)
			tt.want(t, r)
		})
	}
}

func TestReportMerge(t *testing.T) {
	t.Parallel()
	a := check.Check([]check.Conv{dm(4)}, []*check.Device{received(check.NewDevice("a", "ua", "da"), 4)}, sends(4))
	c := dm(4)
	c.Owned = false
	b := check.Check([]check.Conv{c}, []*check.Device{received(check.NewDevice("b", "ub", "db"), 4, 2)}, nil)
	var m check.Report
	m.Merge(a)
	m.Merge(b)
	require.False(t, m.OK())
	require.Equal(t, int64(4), m.Counts.Stored, "a conversation checked by two workers is stored once")
	require.Equal(t, int64(8), m.Counts.Expected)
	require.Equal(t, int64(7), m.Counts.Delivered)
	require.Equal(t, int64(1), m.Counts.Lost)
	require.Equal(t, 1, m.ViolationCount)
}

func TestDeviceHigh(t *testing.T) {
	t.Parallel()
	d := check.NewDevice("a", "ua", "da")
	require.Zero(t, d.High("c1"))
	require.True(t, d.Received("c1", 130))
	require.False(t, d.Received("c1", 130))
	require.Equal(t, uint64(130), d.High("c1"))
	require.Equal(t, int64(2), d.Delivered())
}
