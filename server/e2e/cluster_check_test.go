package e2e_test

import (
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect/v2"
	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/parley"
)

// TestClusterChecker feeds the fault test's checker synthetic runs: a clean
// one passes, and each kind of damage is reported with the device,
// conversation and seq it concerns.
func TestClusterChecker(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		damage func(in *checkInput)
		want   []string // one substring per violation reported; none means a clean run
		counts func(t *testing.T, c checkCounts)
	}{
		{
			name:   "clean_run",
			damage: func(*checkInput) {},
			counts: func(t *testing.T, c checkCounts) {
				require.Equal(t, checkCounts{
					Sent: 3, Acked: 3, FailedBy: map[string]int{}, Stored: 4, Expected: 12, Delivered: 12, WireRepeats: 2,
				}, c)
			},
		},
		{
			name:   "lost_message",
			damage: func(in *checkInput) { in.Devices[2].Messages["g"] = pick(in.Devices[2].Messages["g"], 1, 2, 4) },
			want:   []string{"device b2: group g: lost seq 3 (acknowledged to b1); received 3 of the 4 messages 1..4"},
			counts: func(t *testing.T, c checkCounts) { require.Equal(t, 1, c.Lost) },
		},
		{
			name:   "duplicate_delivery",
			damage: func(in *checkInput) { in.Devices[1].Messages["g"] = pick(in.Devices[1].Messages["g"], 1, 2, 2, 3, 4) },
			want:   []string{"device b1: group g: seq 2 received twice (events #1 and #2)"},
			counts: func(t *testing.T, c checkCounts) { require.Equal(t, 1, c.Duplicated); require.Zero(t, c.Lost) },
		},
		{
			name:   "out_of_order_delivery",
			damage: func(in *checkInput) { in.Devices[1].Messages["g"] = pick(in.Devices[1].Messages["g"], 1, 3, 2, 4) },
			want:   []string{"device b1: group g: seq 2 received after seq 3 (out of order, event #2)"},
			counts: func(t *testing.T, c checkCounts) { require.Equal(t, 1, c.OutOfOrder); require.Zero(t, c.Lost) },
		},
		{
			name: "reordered_on_the_wire",
			damage: func(in *checkInput) {
				in.Devices[2].Wire.Behind = []string{"group g seq 3 after seq 4"}
				in.Devices[2].Messages["g"] = pick(in.Devices[2].Messages["g"], 1, 2, 4)
			},
			want: []string{"device b2: the server delivered group g seq 3 after seq 4", "device b2: group g: lost seq 3"},
		},
		{
			name: "message_stored_twice",
			damage: func(in *checkInput) {
				again := msg("m5", 5, "alice", "a1", "a.1")
				for _, u := range []string{"alice", "bob"} {
					in.Convs[0].Views[u] = append(in.Convs[0].Views[u], again)
				}
				for i := range in.Devices {
					in.Devices[i].Messages["g"] = append(in.Devices[i].Messages["g"], again)
				}
			},
			want: []string{`store: client_msg_id "a.1" of device a1 is stored twice: group g seq 4 and group g seq 5`},
		},
		{
			name: "acknowledged_but_not_stored",
			damage: func(in *checkInput) {
				for _, u := range []string{"alice", "bob"} {
					in.Convs[0].Views[u] = in.Convs[0].Views[u][:3]
				}
				for i := range in.Devices {
					in.Devices[i].Messages["g"] = in.Devices[i].Messages["g"][:3]
				}
			},
			want: []string{`send: a1 "a.1" to group g was acknowledged as seq 4 but the store does not hold it (acknowledged message lost)`},
		},
		{
			name: "gap_in_the_store",
			damage: func(in *checkInput) {
				in.Convs[0].Views["bob"] = pick(in.Convs[0].Views["bob"], 1, 2, 4)
			},
			want: []string{
				"store: group g as user bob reads it: seq 4 follows seq 2",
				"device b1: group g: received seq 3, which the store does not hold for user bob",
				"device b2: group g: received seq 3, which the store does not hold for user bob",
			},
		},
		{
			name: "send_never_answered",
			damage: func(in *checkInput) {
				in.Sends = append(in.Sends, sendRecord{Device: "b2", DeviceID: "b2", Conv: "g", ClientMsgID: "b2.0"})
			},
			want: []string{`send: b2 "b2.0" to group g was neither acknowledged nor reported failed`},
		},
		{
			name: "stored_but_never_sent",
			damage: func(in *checkInput) {
				in.Sends = slices.DeleteFunc(in.Sends, func(s sendRecord) bool { return s.ClientMsgID == "a.0" })
			},
			want: []string{`store: group g seq 2 claims to be a1's "a.0", which it never sent`},
		},
		{
			name: "delivered_outside_membership",
			damage: func(in *checkInput) {
				in.Devices = append(in.Devices, deviceLog{
					Name: "c1", UserID: "carol", DeviceID: "c1",
					Messages: map[string][]*parleyv1.Message{"g": in.Convs[0].Views["alice"][:1]},
				})
			},
			want: []string{"device c1: received 1 messages of group g, which its user is not a member of"},
		},
		{
			name: "gap_frame_and_epoch_change",
			damage: func(in *checkInput) {
				in.Devices[0].Gaps = []*parley.GapEvent{{ConversationID: "g", FromSeq: 1, ToSeq: 3}}
				in.Devices[0].EpochChanges = 1
			},
			want: []string{"device a1: group g: gap frame (1, 3]", "device a1: the server epoch changed 1 times"},
		},
		{
			// A send reported failed may still have been committed (the
			// answer was lost); that is fine if it is delivered everywhere.
			name: "failed_but_committed_and_delivered",
			damage: func(in *checkInput) {
				in.Sends[1].Ack, in.Sends[1].Err = nil, connect.NewError(connect.CodeUnavailable, "store down")
				in.Sends[1].Phase = "restart_postgres"
			},
			counts: func(t *testing.T, c checkCounts) {
				require.Equal(t, 2, c.Acked)
				require.Equal(t, 1, c.Failed)
				require.Equal(t, 1, c.FailedCommitted)
				require.Equal(t, map[string]int{"unavailable during restart_postgres": 1}, c.FailedBy)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := checkFixture()
			tt.damage(&in)
			report := checkCluster(in)
			got := strings.Join(report.Violations, "\n")
			require.Len(t, report.Violations, len(tt.want), got)
			for _, w := range tt.want {
				require.Contains(t, got, w)
			}
			if tt.counts != nil {
				tt.counts(t, report.Counts)
			}
		})
	}
}

// checkFixture is a clean run: group g of alice (device a1) and bob
// (devices b1 and b2) holds a creation notice and three texts, each
// acknowledged to its sender and received by every device in order.
func checkFixture() checkInput {
	created := &parleyv1.Message{Id: "m1", ConversationId: "g", Seq: 1, SenderId: "alice", Kind: parleyv1.MessageKind_MESSAGE_KIND_SYSTEM}
	history := []*parleyv1.Message{
		created,
		msg("m2", 2, "alice", "a1", "a.0"),
		msg("m3", 3, "bob", "b1", "b1.0"),
		msg("m4", 4, "alice", "a1", "a.1"),
	}
	ack := func(m *parleyv1.Message) *parleyv1.SendAck {
		return &parleyv1.SendAck{ClientMsgId: m.GetClientMsgId(), Message: m}
	}
	device := func(name, user string) deviceLog {
		return deviceLog{
			Name: name, UserID: user, DeviceID: name,
			Messages: map[string][]*parleyv1.Message{"g": slices.Clone(history)},
		}
	}
	devices := []deviceLog{device("a1", "alice"), device("b1", "bob"), device("b2", "bob")}
	devices[2].Wire = wireStats{Frames: 6, Repeats: 2}
	return checkInput{
		Convs: []storedConv{{
			ID: "g", Label: "group g",
			Views: map[string][]*parleyv1.Message{"alice": slices.Clone(history), "bob": slices.Clone(history)},
		}},
		Devices: devices,
		Sends: []sendRecord{
			{Device: "a1", DeviceID: "a1", Conv: "g", ClientMsgID: "a.0", Ack: ack(history[1])},
			{Device: "b1", DeviceID: "b1", Conv: "g", ClientMsgID: "b1.0", Ack: ack(history[2])},
			{Device: "a1", DeviceID: "a1", Conv: "g", ClientMsgID: "a.1", Ack: ack(history[3])},
		},
	}
}

func msg(id string, seq uint64, user, device, clientMsgID string) *parleyv1.Message {
	return &parleyv1.Message{
		Id: id, ConversationId: "g", Seq: seq, SenderId: user, SenderDeviceId: device,
		ClientMsgId: clientMsgID, Kind: parleyv1.MessageKind_MESSAGE_KIND_TEXT, Content: parley.Text(clientMsgID),
	}
}

// pick returns the messages of ms at the given seqs, in the given order
// (ms holds seqs 1, 2, ...).
func pick(ms []*parleyv1.Message, seqs ...uint64) []*parleyv1.Message {
	out := make([]*parleyv1.Message, len(seqs))
	for i, seq := range seqs {
		out[i] = ms[seq-1]
	}
	return out
}
