package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
)

// BenchmarkMedia uploads and downloads a 10 MiB and a 100 MiB file
// through a parleyd in this process (embedded store, media on disk) and
// reports how far the heap rose above where it started while doing it.
// The bytes are streamed (1 MiB upload chunks, staged on disk, 256 KiB
// download chunks), never buffered whole, so the rise is about the same
// for both sizes: buffers and HTTP/2 windows, not the file. Client and
// server share the heap measured here.
//
//	go test ./server/cmd/parleyd -run '^$' -bench 'Media/' -benchtime 3x
func BenchmarkMedia(b *testing.B) {
	for _, mib := range []int{10, 100} {
		b.Run(fmt.Sprintf("size=%dMiB", mib), func(b *testing.B) { benchMedia(b, mib<<20) })
	}
}

func benchMedia(b *testing.B, size int) {
	ts := startServerEnv(b, benchEnv())
	hc := h2cClient()
	mc := mediaClient(hc, ts.url, register(b, hc, ts.url, "bench"))
	chunk := make([]byte, 1<<20)
	ctx := b.Context()

	var upPeak, downPeak uint64
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := range b.N {
		// A different file each round, so no upload is de-duplicated.
		fill := func(off int) []byte {
			for j := range chunk {
				chunk[j] = byte(off + j*31 + i)
			}
			return chunk
		}
		h := sha256.New()
		for off := 0; off < size; off += len(chunk) {
			h.Write(fill(off))
		}
		var info *parleyv1.MediaInfo
		upPeak = max(upPeak, heapRise(b, func() {
			var err error
			info, err = streamUpload(ctx, mc, fmt.Sprintf("bench-%d", i), size, h.Sum(nil), fill)
			require.NoError(b, err)
		}))
		downPeak = max(downPeak, heapRise(b, func() {
			n, err := streamDownload(ctx, mc, info.GetMediaId())
			require.NoError(b, err)
			require.Equal(b, int64(size), n)
		}))
	}
	b.StopTimer()
	b.ReportMetric(float64(upPeak)/(1<<20), "upload-heap-rise-MiB")
	b.ReportMetric(float64(downPeak)/(1<<20), "download-heap-rise-MiB")
}

// streamUpload sends size bytes produced chunk by chunk by fill(offset).
func streamUpload(ctx context.Context, mc parleyv1connect.MediaServiceClient, id string, size int, sum []byte, fill func(off int) []byte) (*parleyv1.MediaInfo, error) {
	st, err := mc.Upload(ctx)
	if err != nil {
		return nil, err
	}
	hdr := &parleyv1.UploadHeader{UploadId: id, FileName: "big.bin", SizeBytes: uint64(size), Sha256: sum}
	if err := st.Send(&parleyv1.UploadRequest{Part: &parleyv1.UploadRequest_Header{Header: hdr}}); err != nil {
		return nil, err
	}
	for off := 0; off < size; {
		c := fill(off)
		if err := st.Send(&parleyv1.UploadRequest{Part: &parleyv1.UploadRequest_Chunk{Chunk: c}}); err != nil {
			break
		}
		off += len(c)
	}
	res, err := st.CloseAndReceive()
	return res.GetMedia(), err
}

// streamDownload reads a media's bytes and counts them.
func streamDownload(ctx context.Context, mc parleyv1connect.MediaServiceClient, id string) (int64, error) {
	st, err := mc.Download(ctx, &parleyv1.DownloadRequest{MediaId: id})
	if err != nil {
		return 0, err
	}
	defer st.Close()
	var n int64
	for {
		msg, err := st.Receive()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n += int64(len(msg.GetChunk()))
	}
}

// heapRise runs fn while sampling the heap every few milliseconds and
// returns the highest HeapInuse seen above the level before fn.
func heapRise(tb testing.TB, fn func()) uint64 {
	tb.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > base {
				peak = max(peak, ms.HeapInuse-base)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	fn()
	close(done)
	wg.Wait()
	return peak
}
