package parley

import "time"

// UploadOption configures [Client.Upload] and [Client.UploadFile].
type UploadOption interface {
	applyToUpload(*transferConfig)
}

// DownloadOption configures [Client.Download].
type DownloadOption interface {
	applyToDownload(*transferConfig)
}

// TransferOption configures both uploads and downloads.
type TransferOption interface {
	UploadOption
	DownloadOption
}

// WithAttempts bounds how many streams one upload or download opens: the
// first plus the retries after transient failures. Default 5; values below 1
// mean 1 (no retry).
func WithAttempts(n int) TransferOption {
	return transferOptionFunc(func(cfg *transferConfig) { cfg.attempts = max(n, 1) })
}

// WithTransferBackoff sets the wait between attempts of an upload or
// download: the n-th retry waits a uniformly random duration in
// [0, min(max, base·2ⁿ)). Defaults: base 200ms, max 5s. Non-positive values
// keep the default.
func WithTransferBackoff(base, max time.Duration) TransferOption {
	return transferOptionFunc(func(cfg *transferConfig) {
		if base > 0 {
			cfg.backoff.base = base
		}
		if max > 0 {
			cfg.backoff.max = max
		}
	})
}

// WithUploadID makes the upload use id (1 to 64 bytes, unique per upload of
// this user) instead of a random one. Uploading with the id of an
// unfinished upload resumes it, e.g. after the process restarted: the
// server keeps what it received for a while. The file must be the same
// (size and SHA-256), else the server answers FailedPrecondition.
func WithUploadID(id string) UploadOption {
	return uploadOptionFunc(func(cfg *transferConfig) { cfg.uploadID = id })
}

// WithThumbnail makes [Client.Download] fetch the media's thumbnail (an
// image's preview, longest side at most 320 px) instead of the original.
// Media without a thumbnail is NotFound.
func WithThumbnail() DownloadOption {
	return downloadOptionFunc(func(cfg *transferConfig) { cfg.thumbnail = true })
}

type transferConfig struct {
	attempts  int
	backoff   backoff
	uploadID  string
	thumbnail bool
}

func newTransferConfig() *transferConfig {
	return &transferConfig{
		attempts: 5,
		backoff:  backoff{base: 200 * time.Millisecond, max: 5 * time.Second},
	}
}

func newUploadConfig(opts []UploadOption) *transferConfig {
	cfg := newTransferConfig()
	for _, opt := range opts {
		opt.applyToUpload(cfg)
	}
	cfg.backoff.max = max(cfg.backoff.max, cfg.backoff.base)
	return cfg
}

func newDownloadConfig(opts []DownloadOption) *transferConfig {
	cfg := newTransferConfig()
	for _, opt := range opts {
		opt.applyToDownload(cfg)
	}
	cfg.backoff.max = max(cfg.backoff.max, cfg.backoff.base)
	return cfg
}

type transferOptionFunc func(*transferConfig)

func (f transferOptionFunc) applyToUpload(cfg *transferConfig)   { f(cfg) }
func (f transferOptionFunc) applyToDownload(cfg *transferConfig) { f(cfg) }

type uploadOptionFunc func(*transferConfig)

func (f uploadOptionFunc) applyToUpload(cfg *transferConfig) { f(cfg) }

type downloadOptionFunc func(*transferConfig)

func (f downloadOptionFunc) applyToDownload(cfg *transferConfig) { f(cfg) }
