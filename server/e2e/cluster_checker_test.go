package e2e_test

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"connectrpc.com/connect/v2"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/parley"
)

// The cluster checker judges a run of TestClusterSurvivesFaults from three
// records that do not depend on each other: what the store holds (each
// conversation's history as each member sees it), what every device's
// application received, and what every send returned to its sender. It knows
// nothing about processes or faults, so cluster_check_test.go can feed it
// synthetic runs and show that it catches what it must.

// storedConv is one conversation as the store holds it.
type storedConv struct {
	ID    string
	Label string // for messages, e.g. "dm u03/u04 (cross-shard)"
	// Views holds, per member user id, the conversation's history as that
	// member may read it (from their join point on), in ascending seq.
	Views map[string][]*parleyv1.Message
}

// deviceLog is what one device's application received from its Session.
type deviceLog struct {
	Name     string
	UserID   string
	DeviceID string
	// Messages holds the MessageEvents per conversation in arrival order:
	// the SDK's output, after its de-duplication.
	Messages     map[string][]*parleyv1.Message
	Gaps         []*parley.GapEvent
	EpochChanges int
	Wire         wireStats // the device's streams beneath the SDK
}

// wireStats counts the message deliveries (Message frames and non-duplicate
// SendAcks) that reached a device's streams, before the SDK de-duplicates.
type wireStats struct {
	Frames int // deliveries received
	// Repeats are deliveries of a (conversation, seq) the device had
	// received before, e.g. catch-up after a reconnect resending what was not
	// acknowledged yet. The SDK drops them; they are harmless.
	Repeats int
	// Behind are deliveries of a seq not received before but below one that
	// was: the server broke seq order. The SDK drops them as repeats, so each
	// is lost to the application.
	Behind []string
}

// sendRecord is one Session.SendWithID call and its outcome.
type sendRecord struct {
	Device      string // device name
	DeviceID    string
	Conv        string
	ClientMsgID string
	Ack         *parleyv1.SendAck // nil unless acknowledged
	Err         error             // nil unless reported failed
	Phase       string            // the fault under way when the answer came, if any
}

// checkInput is everything the checker judges.
type checkInput struct {
	Convs   []storedConv
	Devices []deviceLog
	Sends   []sendRecord
}

// checkCounts summarises a run.
type checkCounts struct {
	Sent            int
	Acked           int            // including duplicate SendAcks
	AckedDuplicate  int            // acknowledged with duplicate = true
	Failed          int            // reported failed to the sender
	FailedBy        map[string]int // by Connect code and phase, e.g. "unavailable during restart_postgres"
	FailedCommitted int            // reported failed, yet stored (allowed only if delivered everywhere)
	Stored          int            // messages in the store, system messages included
	Expected        int            // (device, message) deliveries owed
	Delivered       int            // MessageEvents received
	WireRepeats     int            // repeats dropped by the SDK's de-duplication
	Lost            int            // owed deliveries never received
	Duplicated      int            // MessageEvents for a seq the device had already received
	OutOfOrder      int            // MessageEvents below a seq the device had already received
	Unexpected      int            // MessageEvents the store does not justify
}

// String is the summary line the test logs.
func (c checkCounts) String() string {
	failed := make([]string, 0, len(c.FailedBy))
	for _, code := range slices.Sorted(maps.Keys(c.FailedBy)) {
		failed = append(failed, fmt.Sprintf("%s=%d", code, c.FailedBy[code]))
	}
	return fmt.Sprintf("sent=%d acknowledged=%d (duplicate acks %d) failed=%d %v (committed anyway %d) "+
		"stored=%d expected=%d delivered=%d duplicates_dropped_by_client=%d lost=%d duplicated=%d out_of_order=%d unexpected=%d",
		c.Sent, c.Acked, c.AckedDuplicate, c.Failed, failed, c.FailedCommitted,
		c.Stored, c.Expected, c.Delivered, c.WireRepeats, c.Lost, c.Duplicated, c.OutOfOrder, c.Unexpected)
}

// checkReport is the checker's verdict: the run is good when it has no
// violations.
type checkReport struct {
	Counts     checkCounts
	Violations []string
}

// msgKey identifies a send: client_msg_id is unique per sender device.
type msgKey struct {
	deviceID    string
	clientMsgID string
}

// checkCluster judges a run. It never stops at the first problem: every
// violation is listed, each naming the device, conversation and seq.
func checkCluster(in checkInput) checkReport {
	c := &checker{
		report: checkReport{Counts: checkCounts{FailedBy: map[string]int{}}},
		convs:  map[string]*storedConv{},
		bySeq:  map[string]map[uint64]*parleyv1.Message{},
		byKey:  map[msgKey]*parleyv1.Message{},
		acked:  map[string]string{},
	}
	c.checkStore(in.Convs)
	c.checkSends(in.Sends, in.Devices)
	for _, d := range in.Devices {
		c.checkDevice(d)
	}
	return c.report
}

type checker struct {
	report checkReport
	convs  map[string]*storedConv
	bySeq  map[string]map[uint64]*parleyv1.Message // conversation → seq → stored message
	byKey  map[msgKey]*parleyv1.Message            // stored messages that carry a client_msg_id
	acked  map[string]string                       // message id → device whose send was acknowledged
}

func (c *checker) violate(format string, args ...any) {
	c.report.Violations = append(c.report.Violations, fmt.Sprintf(format, args...))
}

// checkStore indexes the store and checks it: each member's view is gapless
// and ends at the conversation's last seq, views agree on every seq, and no
// send is stored twice.
func (c *checker) checkStore(convs []storedConv) {
	for i := range convs {
		conv := &convs[i]
		c.convs[conv.ID] = conv
		seqs := map[uint64]*parleyv1.Message{}
		c.bySeq[conv.ID] = seqs
		var last uint64
		for _, userID := range slices.Sorted(maps.Keys(conv.Views)) {
			view := conv.Views[userID]
			for j, m := range view {
				if j > 0 && m.GetSeq() != view[j-1].GetSeq()+1 {
					c.violate("store: %s as user %s reads it: seq %d follows seq %d (a gap or a repeat in the store)",
						conv.Label, userID, m.GetSeq(), view[j-1].GetSeq())
				}
				if prev, ok := seqs[m.GetSeq()]; ok {
					if prev.GetId() != m.GetId() {
						c.violate("store: %s seq %d is message %s for one member and %s for user %s",
							conv.Label, m.GetSeq(), prev.GetId(), m.GetId(), userID)
					}
					continue
				}
				seqs[m.GetSeq()] = m
			}
			if n := len(view); n > 0 {
				if last != 0 && view[n-1].GetSeq() != last {
					c.violate("store: %s ends at seq %d for user %s but at seq %d for another member",
						conv.Label, view[n-1].GetSeq(), userID, last)
				}
				last = max(last, view[n-1].GetSeq())
			}
		}
		c.report.Counts.Stored += len(seqs)
		for _, seq := range slices.Sorted(maps.Keys(seqs)) {
			m := seqs[seq]
			if m.GetClientMsgId() == "" {
				continue
			}
			k := msgKey{m.GetSenderDeviceId(), m.GetClientMsgId()}
			if prev, ok := c.byKey[k]; ok {
				c.violate("store: client_msg_id %q of device %s is stored twice: %s seq %d and %s seq %d",
					k.clientMsgID, k.deviceID, c.label(prev.GetConversationId()), prev.GetSeq(), conv.Label, seq)
				continue
			}
			c.byKey[k] = m
		}
	}
}

// checkSends checks that every send was answered, that every acknowledged
// one is stored as acknowledged, and that the store holds no text message of
// a test device that no send explains.
func (c *checker) checkSends(sends []sendRecord, devices []deviceLog) {
	counts := &c.report.Counts
	sent := map[msgKey]bool{}
	for _, s := range sends {
		counts.Sent++
		k := msgKey{s.DeviceID, s.ClientMsgID}
		sent[k] = true
		stored, isStored := c.byKey[k]
		switch {
		case s.Ack == nil && s.Err == nil:
			c.violate("send: %s %q to %s was neither acknowledged nor reported failed", s.Device, s.ClientMsgID, c.label(s.Conv))
		case s.Ack != nil && s.Err != nil:
			c.violate("send: %s %q to %s was both acknowledged and reported failed (%v)", s.Device, s.ClientMsgID, c.label(s.Conv), s.Err)
		case s.Err != nil:
			counts.Failed++
			why := connect.CodeOf(s.Err).String()
			if s.Phase != "" {
				why += " during " + s.Phase
			}
			counts.FailedBy[why]++
			if isStored {
				counts.FailedCommitted++
			}
		default:
			counts.Acked++
			if s.Ack.GetDuplicate() {
				counts.AckedDuplicate++
			}
			m := s.Ack.GetMessage()
			switch {
			case m.GetConversationId() != s.Conv || m.GetClientMsgId() != s.ClientMsgID || m.GetSenderDeviceId() != s.DeviceID:
				c.violate("send: %s %q to %s was acknowledged with another message: %s %q of device %s",
					s.Device, s.ClientMsgID, c.label(s.Conv), c.label(m.GetConversationId()), m.GetClientMsgId(), m.GetSenderDeviceId())
			case !isStored:
				c.violate("send: %s %q to %s was acknowledged as seq %d but the store does not hold it (acknowledged message lost)",
					s.Device, s.ClientMsgID, c.label(s.Conv), m.GetSeq())
			case stored.GetId() != m.GetId() || stored.GetSeq() != m.GetSeq():
				c.violate("send: %s %q to %s was acknowledged as message %s seq %d but the store holds it as %s seq %d",
					s.Device, s.ClientMsgID, c.label(s.Conv), m.GetId(), m.GetSeq(), stored.GetId(), stored.GetSeq())
			default:
				c.acked[m.GetId()] = s.Device
			}
		}
	}
	ours := map[string]string{}
	for _, d := range devices {
		ours[d.DeviceID] = d.Name
	}
	for _, k := range slices.SortedFunc(maps.Keys(c.byKey), func(a, b msgKey) int {
		return cmp.Or(cmp.Compare(a.deviceID, b.deviceID), cmp.Compare(a.clientMsgID, b.clientMsgID))
	}) {
		m := c.byKey[k]
		if name, ok := ours[k.deviceID]; ok && !sent[k] && m.GetKind() == parleyv1.MessageKind_MESSAGE_KIND_TEXT {
			c.violate("store: %s seq %d claims to be %s's %q, which it never sent", c.label(m.GetConversationId()), m.GetSeq(), name, k.clientMsgID)
		}
	}
}

// checkDevice checks that a device received, in each of its user's
// conversations, exactly the messages the user may read, each once, in seq
// order, and nothing else.
func (c *checker) checkDevice(d deviceLog) {
	counts := &c.report.Counts
	counts.WireRepeats += d.Wire.Repeats
	for _, b := range d.Wire.Behind {
		c.violate("device %s: the server delivered %s (the SDK drops it: lost)", d.Name, b)
	}
	for _, g := range d.Gaps {
		c.violate("device %s: %s: gap frame (%d, %d] (catch-up is unbounded in this test)", d.Name, c.label(g.ConversationID), g.FromSeq, g.ToSeq)
	}
	if d.EpochChanges > 0 {
		c.violate("device %s: the server epoch changed %d times (the store was never reset)", d.Name, d.EpochChanges)
	}
	for _, convID := range slices.Sorted(maps.Keys(d.Messages)) {
		if conv, ok := c.convs[convID]; !ok || conv.Views[d.UserID] == nil {
			counts.Delivered += len(d.Messages[convID])
			counts.Unexpected += len(d.Messages[convID])
			c.violate("device %s: received %d messages of %s, which its user is not a member of", d.Name, len(d.Messages[convID]), c.label(convID))
		}
	}
	for _, convID := range slices.Sorted(maps.Keys(c.convs)) {
		conv := c.convs[convID]
		want, member := conv.Views[d.UserID]
		if !member {
			continue
		}
		c.checkSequence(d, conv, want, d.Messages[convID])
	}
}

// checkSequence compares what a device received of one conversation with
// what its user may read.
func (c *checker) checkSequence(d deviceLog, conv *storedConv, want, got []*parleyv1.Message) {
	counts := &c.report.Counts
	counts.Expected += len(want)
	counts.Delivered += len(got)
	wantBySeq := make(map[uint64]*parleyv1.Message, len(want))
	for _, m := range want {
		wantBySeq[m.GetSeq()] = m
	}
	seen := make(map[uint64]int, len(got)) // seq → position received
	var high uint64
	for i, m := range got {
		seq := m.GetSeq()
		if first, dup := seen[seq]; dup {
			counts.Duplicated++
			c.violate("device %s: %s: seq %d received twice (events #%d and #%d)", d.Name, conv.Label, seq, first, i)
			continue
		}
		seen[seq] = i
		if seq < high {
			counts.OutOfOrder++
			c.violate("device %s: %s: seq %d received after seq %d (out of order, event #%d)", d.Name, conv.Label, seq, high, i)
		}
		high = max(high, seq)
		stored, ok := wantBySeq[seq]
		switch {
		case !ok:
			counts.Unexpected++
			c.violate("device %s: %s: received seq %d, which the store does not hold for user %s", d.Name, conv.Label, seq, d.UserID)
		case stored.GetId() != m.GetId():
			counts.Unexpected++
			c.violate("device %s: %s: seq %d received as message %s, stored as %s", d.Name, conv.Label, seq, m.GetId(), stored.GetId())
		}
	}
	var lost []string
	for _, m := range want {
		if _, ok := seen[m.GetSeq()]; ok {
			continue
		}
		counts.Lost++
		desc := fmt.Sprint(m.GetSeq())
		if by, ok := c.acked[m.GetId()]; ok {
			desc += " (acknowledged to " + by + ")"
		}
		lost = append(lost, desc)
	}
	if n := len(lost); n > 0 {
		const show = 10
		more := ""
		if n > show {
			more = fmt.Sprintf(" and %d more", n-show)
			lost = lost[:show]
		}
		c.violate("device %s: %s: lost seq %s%s; received %d of the %d messages %d..%d",
			d.Name, conv.Label, strings.Join(lost, ", "), more, len(want)-n, len(want), want[0].GetSeq(), want[len(want)-1].GetSeq())
	}
}

func (c *checker) label(convID string) string {
	if conv, ok := c.convs[convID]; ok {
		return conv.Label
	}
	return "conversation " + convID
}
