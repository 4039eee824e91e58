// Package stats records latencies in HDR histograms: constant memory per
// histogram whatever the number of samples, percentiles accurate to three
// significant digits, and lossless merging of histograms recorded in other
// processes (see Histogram.Encode and Decode).
package stats

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

const (
	// lowest and highest bound what a histogram tracks, in microseconds:
	// 1 µs to 10 minutes. Larger values are recorded as the highest (and
	// counted by Summary.Clamped), never dropped.
	lowest  = 1
	highest = int64(10 * time.Minute / time.Microsecond)
	digits  = 3
)

// Histogram is a latency histogram with microsecond resolution. It is safe
// for concurrent use; the zero value is not usable, call NewHistogram.
type Histogram struct {
	mu      sync.Mutex
	h       *hdrhistogram.Histogram
	clamped int64
}

// Summary is a histogram's percentiles. Zero when nothing was recorded.
type Summary struct {
	Count   int64
	Clamped int64 // samples above 10 minutes, recorded as 10 minutes
	Min     time.Duration
	Mean    time.Duration
	P50     time.Duration
	P90     time.Duration
	P99     time.Duration
	P999    time.Duration
	Max     time.Duration
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{h: hdrhistogram.New(lowest, highest, digits)}
}

// Record adds one sample. Negative durations (a clock step) count as 0,
// durations above the tracked range as its highest value.
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d/time.Microsecond), lowest)
	h.mu.Lock()
	defer h.mu.Unlock()
	if v > highest {
		v = highest
		h.clamped++
	}
	_ = h.h.RecordValue(v) // cannot fail: v is within the tracked range
}

// Count returns the number of samples.
func (h *Histogram) Count() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.h.TotalCount()
}

// Merge adds every sample of o to h. o is unchanged.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o == h {
		return
	}
	o.mu.Lock()
	from := o.h.Clone()
	clamped := o.clamped
	o.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.h.Merge(from)
	h.clamped += clamped
}

// Reset forgets every sample.
func (h *Histogram) Reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.h.Reset()
	h.clamped = 0
}

// Summary returns the histogram's percentiles.
func (h *Histogram) Summary() Summary {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h.TotalCount() == 0 {
		return Summary{}
	}
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	return Summary{
		Count:   h.h.TotalCount(),
		Clamped: h.clamped,
		Min:     us(h.h.Min()),
		Mean:    time.Duration(h.h.Mean() * float64(time.Microsecond)),
		P50:     us(h.h.ValueAtQuantile(50)),
		P90:     us(h.h.ValueAtQuantile(90)),
		P99:     us(h.h.ValueAtQuantile(99)),
		P999:    us(h.h.ValueAtQuantile(99.9)),
		Max:     us(h.h.Max()),
	}
}

// Encoded is a histogram in transit between processes: HdrHistogram's
// compressed V2 encoding (base64), readable by every HdrHistogram
// implementation, plus the count of clamped samples.
type Encoded struct {
	HDR     string `json:"hdr"`
	Clamped int64  `json:"clamped,omitempty"`
}

// Encode returns the histogram in a form that Decode turns back into an
// equal histogram, e.g. in another process.
func (h *Histogram) Encode() (Encoded, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, err := h.h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return Encoded{}, fmt.Errorf("stats: encode histogram: %w", err)
	}
	return Encoded{HDR: string(b), Clamped: h.clamped}, nil
}

// Decode turns an Encoded histogram back into a Histogram. The zero Encoded
// decodes to an empty histogram.
func Decode(e Encoded) (*Histogram, error) {
	if e.HDR == "" {
		return NewHistogram(), nil
	}
	d, err := hdrhistogram.Decode([]byte(e.HDR))
	if err != nil {
		return nil, fmt.Errorf("stats: decode histogram: %w", err)
	}
	if d.LowestTrackableValue() != lowest || d.HighestTrackableValue() < highest {
		return nil, errors.New("stats: decode histogram: not one of ours (different range)")
	}
	// Merge into a fresh histogram of our own geometry, so later merges
	// never drop samples.
	h := NewHistogram()
	h.h.Merge(d)
	h.clamped = e.Clamped
	return h, nil
}

// MergeEncoded decodes every histogram and merges them into one.
func MergeEncoded(es ...Encoded) (*Histogram, error) {
	h := NewHistogram()
	for _, e := range es {
		d, err := Decode(e)
		if err != nil {
			return nil, err
		}
		h.Merge(d)
	}
	return h, nil
}
