// Package worker runs a load test's devices. The coordinator (package
// scenario) signs the devices up and creates their conversations, then
// hands the Plan to one Worker per generator process and drives them
// through phases: connect, send on a schedule, drain, collect, check. A
// Worker runs in the coordinator's process, or in a process of its own
// behind Serve and Remote, which speak JSON lines over stdin and stdout.
package worker

import (
	"time"

	"github.com/parley-im/parley/loadtest/internal/check"
	"github.com/parley-im/parley/loadtest/internal/client"
	"github.com/parley-im/parley/loadtest/internal/stats"
)

// Plan is the run as every worker sees it.
type Plan struct {
	RunID       string        `json:"run_id"`
	Transport   string        `json:"transport"`
	SourceAddrs []string      `json:"source_addrs,omitempty"`
	AckInterval time.Duration `json:"ack_interval,omitempty"`
	Devices     []DeviceSpec  `json:"devices"`
	Convs       []ConvSpec    `json:"convs"`
	// Track is the number of message indexes whose deliveries are tracked
	// per message (for fan-out latency); 0 tracks none.
	Track int `json:"track,omitempty"`
}

// DeviceSpec is one device and the worker that runs it.
type DeviceSpec struct {
	Name   string             `json:"name"`
	Server string             `json:"server"` // base URL of its shard
	Creds  client.Credentials `json:"creds"`
	Worker int                `json:"worker"`
}

// ConvSpec is a conversation and its member devices (indexes into
// Plan.Devices).
type ConvSpec struct {
	ID      string `json:"id"`
	Label   string `json:"label"`
	Members []int  `json:"members"`
}

// Sender is a device sending to one of its conversations.
type Sender struct {
	Device int    `json:"device"`
	Conv   string `json:"conv"`
}

// InitArgs gives a worker the plan and its number.
type InitArgs struct {
	Plan   *Plan `json:"plan"`
	Worker int   `json:"worker"`
}

// ConnectArgs starts sessions.
type ConnectArgs struct {
	// Devices are plan indexes; nil means every device of the worker.
	Devices []int `json:"devices,omitempty"`
	// At is when to start (all workers alike); zero means at once.
	At time.Time `json:"at"`
	// Until, when set, also waits for each device to receive every seq up
	// to Until[conv] of its conversations (catch-up).
	Until   map[string]uint64 `json:"until,omitempty"`
	Timeout time.Duration     `json:"timeout"`
}

// ConnectResult says how the sessions came up.
type ConnectResult struct {
	Connected int `json:"connected"`
	// SyncTimes are, per device, from At to the end of catch-up
	// (sync_complete) on its first stream.
	SyncTimes []time.Duration `json:"sync_times,omitempty"`
	// CatchupTimes are, per device with a target, from At until it had
	// received everything up to Until.
	CatchupTimes []time.Duration `json:"catchup_times,omitempty"`
	Failed       int             `json:"failed"`
	FirstError   string          `json:"first_error,omitempty"`
	// Missing counts seqs below Until not received by the timeout.
	Missing int64 `json:"missing,omitempty"`
}

// IdleArgs opens bare streams, each on its own connection.
type IdleArgs struct {
	Devices     []int         `json:"devices,omitempty"`
	Concurrency int           `json:"concurrency"`
	Timeout     time.Duration `json:"timeout"` // per stream
	// MaxFailures stops opening after this many failures (machine limits
	// stop it at the first).
	MaxFailures int `json:"max_failures"`
}

// IdleResult says how many streams are held.
type IdleResult struct {
	Opened     int           `json:"opened"`
	Failed     int           `json:"failed"`
	FirstError string        `json:"first_error,omitempty"`
	Limit      string        `json:"limit,omitempty"` // the machine limit that stopped it
	Elapsed    time.Duration `json:"elapsed"`
}

// DevicesArgs names devices (nil: every device of the worker).
type DevicesArgs struct {
	Devices []int `json:"devices,omitempty"`
}

// SendArgs is a send schedule. Message j (0 ≤ j < Count) goes from
// Senders[j % len(Senders)], at Start + j/Rate on an open-loop schedule,
// or as soon as one of Window sends per sending device finishes when Rate
// is 0. Its text records its tracked index IndexBase+j and its scheduled
// time.
type SendArgs struct {
	Start     time.Time     `json:"start"`
	Rate      float64       `json:"rate"`
	Count     int           `json:"count"`
	Senders   []Sender      `json:"senders"`
	IndexBase int           `json:"index_base"`
	Tag       string        `json:"tag"` // client_msg_id prefix, unique per phase
	Window    int           `json:"window"`
	Size      int           `json:"size"`
	Timeout   time.Duration `json:"timeout"` // per send
}

// SendResult is what the senders were told.
type SendResult struct {
	Sent       int64             `json:"sent"`
	Acked      int64             `json:"acked"`
	Failed     int64             `json:"failed"`
	Errors     map[string]int64  `json:"errors,omitempty"`
	FirstError string            `json:"first_error,omitempty"`
	LastSeq    map[string]uint64 `json:"last_seq,omitempty"` // highest acknowledged seq per conversation
	// Elapsed runs from Start to the last answer.
	Elapsed time.Duration `json:"elapsed"`
	// Behind is how far the schedule fell behind at most (the generator
	// itself could not keep up when this is large).
	Behind time.Duration `json:"behind"`
}

// DrainArgs waits for deliveries.
type DrainArgs struct {
	Until   map[string]uint64 `json:"until"`
	Timeout time.Duration     `json:"timeout"`
}

// DrainResult says whether everything arrived.
type DrainResult struct {
	Missing  int64         `json:"missing"`
	TimedOut bool          `json:"timed_out"`
	Waited   time.Duration `json:"waited"`
}

// CollectResult is what was measured since the last collect.
type CollectResult struct {
	// Deliver is send→deliver latency (from the scheduled send time) of
	// messages received by devices other than their sender.
	Deliver stats.Encoded `json:"deliver"`
	// Ack is send→SendAck latency, from the scheduled time.
	Ack       stats.Encoded `json:"ack"`
	Delivered int64         `json:"delivered"`
	// Track holds the tracked messages that reached any device.
	Track []TrackEntry `json:"track,omitempty"`
}

// TrackEntry is one tracked message: how many of this worker's devices
// received it (its sender's excluded) and when the last did.
type TrackEntry struct {
	Index int   `json:"i"`
	N     int32 `json:"n"`
	Last  int64 `json:"t"` // unix nanoseconds
}

// CheckArgs runs the delivery checker.
type CheckArgs struct {
	// Timeout bounds the wait for stored messages to arrive first.
	Timeout time.Duration `json:"timeout"`
}

// Progress is a snapshot of the counters.
type Progress struct {
	Sent      int64 `json:"sent"`
	Acked     int64 `json:"acked"`
	Failed    int64 `json:"failed"`
	Delivered int64 `json:"delivered"`
	Online    int64 `json:"online"` // devices with a session
	Synced    int64 `json:"synced"` // of them, caught up at least once
	Idle      int64 `json:"idle"`   // bare streams open
	Dropped   int64 `json:"dropped"`
	// DropError is why the first dropped stream ended.
	DropError string `json:"drop_error,omitempty"`
	// Disconnects counts sessions' streams that broke (the session
	// reconnected); DisconnectError is the first one's error.
	Disconnects     int64  `json:"disconnects"`
	DisconnectError string `json:"disconnect_error,omitempty"`
}

// CheckResult is the checker's report for the worker's devices.
type CheckResult = check.Report
