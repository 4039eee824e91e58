// Package check is the load generator's delivery checker. While a run goes,
// each device records what its application received (Device) and each send
// its outcome (Sends); afterwards Check compares both with what the store
// holds (each conversation's history) and counts what was lost, duplicated,
// out of order or unexplained. It knows nothing of transports or scenarios.
package check

import (
	"sync"
)

// Device records what one device's application received: the messages
// its client handed over after de-duplication, and those it paged through
// history after a gap frame. It is safe for concurrent use.
type Device struct {
	Name     string
	UserID   string
	DeviceID string

	mu          sync.Mutex
	convs       map[string]*seqSet
	delivered   int64
	filled      int64
	duplicates  int64
	outOfOrder  int64
	redelivered int64
}

// NewDevice returns an empty record for a device of a user.
func NewDevice(name, userID, deviceID string) *Device {
	return &Device{Name: name, UserID: userID, DeviceID: deviceID, convs: map[string]*seqSet{}}
}

// Received records a message the application received from the stream
// (a Message frame or its own SendAck). It reports false for a seq the
// device had received before: a duplicate, which Check counts.
func (d *Device) Received(conv string, seq uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.delivered++
	return d.add(conv, seq, true)
}

// Filled records a message the application fetched with GetHistory after
// the server announced a gap in its catch-up.
func (d *Device) Filled(conv string, seq uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.filled++
	d.add(conv, seq, false) // pages may come after the tail that followed the gap
}

// Redelivered counts a delivery that reached the device's stream again
// and that its client dropped as a repeat (harmless: e.g. catch-up after a
// reconnect resending what was not acknowledged yet).
func (d *Device) Redelivered() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.redelivered++
}

// High returns the highest seq received in a conversation (0 for none).
func (d *Device) High(conv string) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.convs[conv]; s != nil {
		return s.high
	}
	return 0
}

// Delivered returns how many messages the application received from the
// stream, repeats included.
func (d *Device) Delivered() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.delivered
}

func (d *Device) add(conv string, seq uint64, ordered bool) bool {
	s := d.convs[conv]
	if s == nil {
		s = &seqSet{}
		d.convs[conv] = s
	}
	if s.has(seq) {
		d.duplicates++
		return false
	}
	if ordered && seq < s.high {
		d.outOfOrder++
	}
	s.set(seq)
	return true
}

// seqSet is a set of seqs of one conversation: a bitmap, since seqs are
// gapless from 1.
type seqSet struct {
	bits []uint64
	high uint64
}

func (s *seqSet) has(seq uint64) bool {
	i := seq / 64
	return i < uint64(len(s.bits)) && s.bits[i]&(1<<(seq%64)) != 0
}

func (s *seqSet) set(seq uint64) {
	i := seq / 64
	if i >= uint64(len(s.bits)) {
		n := max(2*len(s.bits), int(i)+1)
		bits := make([]uint64, n)
		copy(bits, s.bits)
		s.bits = bits
	}
	s.bits[i] |= 1 << (seq % 64)
	s.high = max(s.high, seq)
}

// Send is one send and its outcome as the sender saw it.
type Send struct {
	DeviceID    string
	Conv        string
	ClientMsgID string
	// Seq is the acknowledged message's seq; 0 unless acknowledged.
	Seq uint64
	// Duplicate is set when the server answered that client_msg_id was
	// committed before.
	Duplicate bool
	// Err is the Connect code name of a failed send ("deadline_exceeded",
	// "resource_exhausted", ...); empty when acknowledged.
	Err string
}

// Sends collects Send records. It is safe for concurrent use.
type Sends struct {
	mu   sync.Mutex
	list []Send
}

// Add records a send's outcome.
func (s *Sends) Add(r Send) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, r)
}

// List returns a copy of the records.
func (s *Sends) List() []Send {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Send(nil), s.list...)
}

func (s *seqSet) count() int64 {
	var n int64
	for range s.all() {
		n++
	}
	return n
}

// all yields the seqs in the set in ascending order.
func (s *seqSet) all() func(yield func(uint64) bool) {
	return func(yield func(uint64) bool) {
		for i, w := range s.bits {
			for b := uint64(0); w != 0 && b < 64; b++ {
				if w&(1<<b) == 0 {
					continue
				}
				w &^= 1 << b
				if !yield(uint64(i)*64 + b) {
					return
				}
			}
		}
	}
}
