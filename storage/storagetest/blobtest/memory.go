package blobtest

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

// heapSampleEvery is how often MeasureLarge samples the live heap while a
// call runs. Sampling can miss a short spike; the totals cannot.
const heapSampleEvery = 2 * time.Millisecond

// Memory is what one streamed call cost in memory.
type Memory struct {
	// PeakHeap is the most live heap seen above the level before the
	// call, sampled every few milliseconds.
	PeakHeap uint64
	// TotalAlloc is every byte allocated during the call, freed or not.
	TotalAlloc uint64
}

// LargeResult is MeasureLarge's finding for a Put and for reading the
// blob back through Open.
type LargeResult struct {
	Put, Open Memory
}

// MeasureLarge stores a generated blob of size bytes, reads it back, checks
// its digest, deletes it, and reports the memory each step took. The blob
// is generated and hashed as it streams, so the test itself holds next to
// nothing: what the numbers show is the store's buffering. Other
// goroutines allocating meanwhile inflate them, so call it from a test
// that does not run in parallel with others.
func MeasureLarge(tb testing.TB, s storage.BlobStore, size int64) LargeResult {
	tb.Helper()
	b := newBlob(size)
	key := "large/" + b.key()
	want := b.digestFrom(0)

	var res LargeResult
	res.Put = measure(func() {
		require.NoError(tb, s.Put(tb.Context(), key, b.reader(), size, "application/octet-stream"))
	})
	res.Open = measure(func() {
		rc, info, err := s.Open(tb.Context(), key, 0)
		require.NoError(tb, err)
		defer rc.Close()
		require.Equal(tb, size, info.Size)
		h := sha256.New()
		n, err := io.Copy(h, rc)
		require.NoError(tb, err)
		require.Equal(tb, size, n)
		require.Equal(tb, want, hex.EncodeToString(h.Sum(nil)))
	})
	require.NoError(tb, s.Delete(tb.Context(), key))
	return res
}

// measure runs f and reports its memory use.
func measure(f func()) Memory {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)

	var (
		peak uint64
		wg   sync.WaitGroup
	)
	done := make(chan struct{})
	wg.Go(func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tick := time.NewTicker(heapSampleEvery)
		defer tick.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > base && v-base > peak {
				peak = v - base
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	func() {
		// Deferred, so the sampler stops also when f fails the test.
		defer func() {
			close(done)
			wg.Wait()
		}()
		f()
	}()
	runtime.ReadMemStats(&after)
	return Memory{PeakHeap: peak, TotalAlloc: after.TotalAlloc - before.TotalAlloc}
}
