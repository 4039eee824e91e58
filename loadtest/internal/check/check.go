package check

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// maxViolations bounds the violations a Report lists; the rest are only
// counted.
const maxViolations = 25

// Conv is one conversation as the store holds it.
type Conv struct {
	ID    string
	Label string // for violations, e.g. "dm p0003"
	// Members are the user ids whose devices are owed every message.
	Members []string
	// Messages is the history from the first seq the members may read, in
	// ascending seq order (GetHistory pages).
	Messages []Message
	// Owned marks the one checker that counts this conversation's messages
	// in Counts.Stored when several processes check devices of it.
	Owned bool
}

// Message is a stored message, as much as the checker needs.
type Message struct {
	Seq            uint64
	ClientMsgID    string
	SenderDeviceID string
}

// Counts summarises a run. Every field adds up across checkers of disjoint
// device sets (see Add).
type Counts struct {
	Sent           int64            `json:"sent"`
	Acked          int64            `json:"acknowledged"`
	AckedDuplicate int64            `json:"acknowledged_duplicate,omitempty"`
	Failed         int64            `json:"failed"`
	FailedBy       map[string]int64 `json:"failed_by,omitempty"` // by Connect code
	Stored         int64            `json:"stored"`
	Expected       int64            `json:"expected"`    // (device, message) deliveries owed
	Delivered      int64            `json:"delivered"`   // messages the devices' applications received from their streams
	GapFilled      int64            `json:"gap_filled"`  // messages paged through history after a gap frame
	Redelivered    int64            `json:"redelivered"` // repeats the clients' de-duplication dropped
	Duplicates     int64            `json:"duplicates"`  // messages an application received twice
	OutOfOrder     int64            `json:"out_of_order"`
	Unexpected     int64            `json:"unexpected"` // received, but not in the store for that user
	Lost           int64            `json:"lost"`       // owed deliveries never received, plus acknowledged sends the store lacks
	AckedLost      int64            `json:"acknowledged_lost"`
}

// Add adds o's counts to c.
func (c *Counts) Add(o Counts) {
	c.Sent += o.Sent
	c.Acked += o.Acked
	c.AckedDuplicate += o.AckedDuplicate
	c.Failed += o.Failed
	for k, v := range o.FailedBy {
		if c.FailedBy == nil {
			c.FailedBy = map[string]int64{}
		}
		c.FailedBy[k] += v
	}
	c.Stored += o.Stored
	c.Expected += o.Expected
	c.Delivered += o.Delivered
	c.GapFilled += o.GapFilled
	c.Redelivered += o.Redelivered
	c.Duplicates += o.Duplicates
	c.OutOfOrder += o.OutOfOrder
	c.Unexpected += o.Unexpected
	c.Lost += o.Lost
	c.AckedLost += o.AckedLost
}

// String is the one-line summary.
func (c Counts) String() string {
	return fmt.Sprintf("sent %d, acknowledged %d, failed %d, delivered %d (+%d paged after gaps), expected %d, lost %d, duplicates %d, out of order %d, unexpected %d",
		c.Sent, c.Acked, c.Failed, c.Delivered, c.GapFilled, c.Expected, c.Lost, c.Duplicates, c.OutOfOrder, c.Unexpected)
}

// Report is the checker's verdict.
type Report struct {
	Counts Counts `json:"counts"`
	// Violations lists the first problems found, each naming the device,
	// conversation and seq; ViolationCount counts them all.
	Violations     []string `json:"violations,omitempty"`
	ViolationCount int      `json:"violation_count"`
}

// OK reports a run with nothing lost, duplicated, reordered or
// unexplained. Failed sends are not violations: the sender was told.
func (r Report) OK() bool { return r.ViolationCount == 0 }

// Merge adds another checker's report (of other devices) to r.
func (r *Report) Merge(o Report) {
	r.Counts.Add(o.Counts)
	r.ViolationCount += o.ViolationCount
	for _, v := range o.Violations {
		if len(r.Violations) < maxViolations {
			r.Violations = append(r.Violations, v)
		}
	}
}

// Check judges a run: every device must have received, in each
// conversation its user is a member of, every stored message exactly once
// and nothing else; every acknowledged send must be stored as
// acknowledged. Failed sends are counted, not judged: the message may or
// may not be stored, and if it is, it is owed like any other.
func Check(convs []Conv, devices []*Device, sends []Send) Report {
	c := &checker{convs: map[string]*Conv{}, bySeq: map[string]map[uint64]Message{}}
	c.report.Counts.FailedBy = map[string]int64{}
	for i := range convs {
		c.indexConv(&convs[i])
	}
	c.checkSends(sends)
	for _, d := range devices {
		c.checkDevice(d)
	}
	return c.report
}

type checker struct {
	report Report
	convs  map[string]*Conv
	bySeq  map[string]map[uint64]Message
}

func (c *checker) violate(format string, args ...any) {
	c.report.ViolationCount++
	if len(c.report.Violations) < maxViolations {
		c.report.Violations = append(c.report.Violations, fmt.Sprintf(format, args...))
	}
}

func (c *checker) indexConv(conv *Conv) {
	c.convs[conv.ID] = conv
	seqs := make(map[uint64]Message, len(conv.Messages))
	c.bySeq[conv.ID] = seqs
	for i, m := range conv.Messages {
		if i > 0 && m.Seq != conv.Messages[i-1].Seq+1 {
			c.violate("store: %s: seq %d follows seq %d in history (a gap or a repeat)", conv.Label, m.Seq, conv.Messages[i-1].Seq)
		}
		seqs[m.Seq] = m
	}
	if conv.Owned {
		c.report.Counts.Stored += int64(len(seqs))
	}
}

func (c *checker) checkSends(sends []Send) {
	counts := &c.report.Counts
	for _, s := range sends {
		counts.Sent++
		if s.Err != "" {
			counts.Failed++
			counts.FailedBy[s.Err]++
			continue
		}
		counts.Acked++
		if s.Duplicate {
			counts.AckedDuplicate++
		}
		conv, ok := c.convs[s.Conv]
		if !ok {
			continue // a conversation this checker was not given
		}
		m, stored := c.bySeq[s.Conv][s.Seq]
		switch {
		case !stored:
			counts.Lost++
			counts.AckedLost++
			c.violate("send: %q to %s was acknowledged as seq %d, which the store does not hold (acknowledged message lost)", s.ClientMsgID, conv.Label, s.Seq)
		case m.ClientMsgID != s.ClientMsgID || m.SenderDeviceID != s.DeviceID:
			counts.Lost++
			counts.AckedLost++
			c.violate("send: %q of device %s to %s was acknowledged as seq %d, which the store holds as %q of device %s",
				s.ClientMsgID, s.DeviceID, conv.Label, s.Seq, m.ClientMsgID, m.SenderDeviceID)
		}
	}
}

func (c *checker) checkDevice(d *Device) {
	counts := &c.report.Counts
	d.mu.Lock()
	defer d.mu.Unlock()
	counts.Delivered += d.delivered
	counts.GapFilled += d.filled
	counts.Redelivered += d.redelivered
	counts.Duplicates += d.duplicates
	counts.OutOfOrder += d.outOfOrder
	if d.duplicates > 0 {
		c.violate("device %s: received %d messages twice", d.Name, d.duplicates)
	}
	if d.outOfOrder > 0 {
		c.violate("device %s: received %d messages after a higher seq of their conversation (out of order)", d.Name, d.outOfOrder)
	}
	for _, convID := range slices.Sorted(maps.Keys(d.convs)) {
		got := d.convs[convID]
		conv, ok := c.convs[convID]
		if !ok {
			continue // not given to this checker
		}
		if !slices.Contains(conv.Members, d.UserID) {
			n := got.count()
			counts.Unexpected += n
			c.violate("device %s: received %d messages of %s, which its user is not a member of", d.Name, n, conv.Label)
		}
	}
	for _, convID := range slices.Sorted(maps.Keys(c.convs)) {
		conv := c.convs[convID]
		if slices.Contains(conv.Members, d.UserID) {
			c.checkConv(d, conv, d.convs[convID])
		}
	}
}

// checkConv compares what a device received of one conversation with what
// the store holds.
func (c *checker) checkConv(d *Device, conv *Conv, got *seqSet) {
	counts := &c.report.Counts
	if got == nil {
		got = &seqSet{}
	}
	counts.Expected += int64(len(conv.Messages))
	var lost []string
	nLost := 0
	for _, m := range conv.Messages {
		if got.has(m.Seq) {
			continue
		}
		nLost++
		if len(lost) < 10 {
			lost = append(lost, fmt.Sprint(m.Seq))
		}
	}
	counts.Lost += int64(nLost)
	if nLost > 0 {
		more := ""
		if nLost > len(lost) {
			more = fmt.Sprintf(" and %d more", nLost-len(lost))
		}
		c.violate("device %s: %s: lost seq %s%s (of %d stored)", d.Name, conv.Label, strings.Join(lost, ", "), more, len(conv.Messages))
	}
	stored := c.bySeq[conv.ID]
	var first uint64
	if len(conv.Messages) > 0 {
		first = conv.Messages[0].Seq
	}
	unexpected := 0
	for seq := range got.all() {
		if _, ok := stored[seq]; !ok && seq >= first {
			unexpected++
		}
	}
	if unexpected > 0 {
		counts.Unexpected += int64(unexpected)
		c.violate("device %s: %s: received %d seqs the store does not hold", d.Name, conv.Label, unexpected)
	}
}
