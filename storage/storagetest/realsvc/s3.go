package realsvc

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

const (
	// S3Install is the command that installs the binary StartS3 needs
	// (SeaweedFS's weed, built from its Go module into .tmp/bin).
	S3Install = "make .tmp/bin/weed"

	// S3AccessKeyID and S3SecretAccessKey are the credentials the server
	// accepts, with every permission.
	S3AccessKeyID     = "parley-test"
	S3SecretAccessKey = "parley-test-secret-key"
	// S3Bucket exists when StartS3 returns.
	S3Bucket = "parley-test"

	// s3BinEnv names the weed binary, overriding PATH.
	s3BinEnv = "PARLEY_WEED"
	// s3StartAttempts bounds the retries when a chosen port was taken
	// between picking it and the server binding it.
	s3StartAttempts = 3
	// s3ReadyTimeout bounds the wait for a started server to store an
	// object: about 10 s here, most of it SeaweedFS growing volumes for
	// the first write; longer on a busy machine.
	s3ReadyTimeout = 60 * time.Second
	// s3Ports is how many ports weed server listens on: HTTP and gRPC of
	// the master, the volume server, the filer and the S3 gateway.
	s3Ports = 8
)

// s3Identities is the server's S3 identity file: one user with every
// permission. Anonymous requests are refused.
var s3Identities = fmt.Sprintf(`{"identities": [{"name": "parley", "credentials": [{"accessKey": %q, "secretKey": %q}], "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}`,
	S3AccessKeyID, S3SecretAccessKey)

// S3 is a throwaway S3-compatible server: SeaweedFS's `weed server` (a
// master, a volume server, a filer and the S3 gateway in one process) on
// 127.0.0.1 with its data in a temporary directory. It is safe for
// concurrent use. Stop stops the server and deletes its directory.
type S3 struct {
	bin      string
	dir      string
	endpoint string
	// sockets are the Unix sockets weed server makes next to its gRPC
	// ports, in /tmp whatever TMPDIR says; killed, it leaves them.
	sockets []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	stopped bool
}

// StartS3 starts a SeaweedFS server on free loopback ports and waits until
// it stores an object in S3Bucket, which it creates. The weed binary is
// $PARLEY_WEED, else weed on PATH, else .tmp/bin/weed in the enclosing
// module (where `make .tmp/bin/weed` puts it); when none exists the error names the
// install command. The caller must Stop the server.
func StartS3() (*S3, error) {
	bin, err := weedBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "weed")
	if err != nil {
		return nil, fmt.Errorf("realsvc: s3: %w", err)
	}
	s := &S3{bin: bin, dir: dir}
	if err := os.WriteFile(filepath.Join(dir, "s3.json"), []byte(s3Identities), 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("realsvc: s3: %w", err)
	}
	for attempt := 1; ; attempt++ {
		err = s.start()
		if err == nil {
			return s, nil
		}
		if attempt == s3StartAttempts {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
}

// StartS3TB starts a server for one test (or benchmark) and stops it in
// tb.Cleanup. A missing binary fails tb with the install command. Prefer
// one server per test binary (StartS3 in TestMain): it takes seconds.
func StartS3TB(tb testing.TB) *S3 {
	tb.Helper()
	s, err := StartS3()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

// Endpoint is the S3 gateway's host:port (plain HTTP).
func (s *S3) Endpoint() string { return s.endpoint }

// Stop kills the server's process group and deletes its directory. It is
// idempotent.
func (s *S3) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	s.terminate()
	return os.RemoveAll(s.dir)
}

// start runs weed server on fresh ports and waits until it is ready. The
// caller holds s.mu (or owns s exclusively).
func (s *S3) start() error {
	ports, err := freePorts(s3Ports)
	if err != nil {
		return fmt.Errorf("realsvc: s3: %w", err)
	}
	// A fresh data directory: a failed attempt's master state names its
	// ports.
	data := filepath.Join(s.dir, "data")
	if err := os.RemoveAll(data); err != nil {
		return fmt.Errorf("realsvc: s3: %w", err)
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("realsvc: s3: %w", err)
	}
	logPath := filepath.Join(s.dir, "weed.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("realsvc: s3: %w", err)
	}
	defer logFile.Close()
	port := func(i int) string { return strconv.Itoa(ports[i]) }
	cmd := exec.Command(s.bin,
		"-logtostderr", "-config_dir="+s.dir,
		"server",
		"-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-dir="+data,
		"-master.port="+port(0), "-master.port.grpc="+port(1),
		"-master.telemetry=false",
		"-master.volumeSizeLimitMB=64", "-volume.max=64",
		"-volume.port="+port(2), "-volume.port.grpc="+port(3),
		"-volume.preStopSeconds=0",
		"-filer", "-filer.port="+port(4), "-filer.port.grpc="+port(5),
		"-filer.localSocket="+filepath.Join(s.dir, "filer.sock"),
		"-s3", "-s3.port="+port(6), "-s3.port.grpc="+port(7),
		"-s3.port.iceberg=0", "-s3.port.lance=0",
		"-s3.localSocket="+filepath.Join(s.dir, "s3.sock"),
		"-s3.config="+filepath.Join(s.dir, "s3.json"),
	)
	cmd.Dir = s.dir
	// HOME too: weed also reads configuration from ~/.seaweedfs.
	cmd.Env = append(os.Environ(), "HOME="+s.dir)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Its own process group, so Stop reaches anything it starts; and it
	// dies with the test binary even if Stop is never called.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("realsvc: s3: start: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	s.endpoint = net.JoinHostPort("127.0.0.1", port(6))
	s.sockets = []string{
		"/tmp/seaweedfs-master-grpc-" + port(1) + ".sock",
		"/tmp/seaweedfs-volume-grpc-" + port(3) + ".sock",
		"/tmp/seaweedfs-filer-grpc-" + port(5) + ".sock",
		"/tmp/seaweedfs-s3-grpc-" + port(7) + ".sock",
	}

	ctx, cancel := context.WithTimeout(context.Background(), s3ReadyTimeout)
	defer cancel()
	var lastErr error
	for {
		select {
		case <-exited:
			s.cmd = nil
			s.removeSockets()
			return fmt.Errorf("realsvc: s3: weed server exited during start: %s", logTail(logPath))
		default:
		}
		if lastErr = s3Probe(ctx, s.endpoint); lastErr == nil {
			return nil
		}
		if ctx.Err() != nil {
			s.terminate()
			return fmt.Errorf("realsvc: s3: not ready after %s (%w): %s", s3ReadyTimeout, lastErr, logTail(logPath))
		}
		time.Sleep(100 * time.Millisecond) // polling a process that has no readiness signal
	}
}

// terminate kills the running process group, if any, and waits for the
// server. SIGKILL, not SIGTERM: weed's graceful shutdown takes over 10 s,
// and nothing in a throwaway server needs flushing.
func (s *S3) terminate() {
	if s.cmd == nil {
		return
	}
	cmd, exited := s.cmd, s.exited
	s.cmd, s.exited = nil, nil
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // Setpgid: the group id is the leader's pid
	<-exited
	s.removeSockets()
}

// removeSockets deletes the Unix sockets of a server that is gone.
func (s *S3) removeSockets() {
	for _, sock := range s.sockets {
		_ = os.Remove(sock)
	}
}

// s3Probe creates S3Bucket (if missing) and writes, reads and deletes an
// object: the master, volume server, filer and gateway all work.
func s3Probe(ctx context.Context, endpoint string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tr, err := minio.DefaultTransport(false)
	if err != nil {
		return err
	}
	defer tr.CloseIdleConnections()
	c, err := minio.New(endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(S3AccessKeyID, S3SecretAccessKey, ""),
		Transport:  tr,
		MaxRetries: 1,
	})
	if err != nil {
		return err
	}
	ok, err := c.BucketExists(ctx, S3Bucket)
	if err != nil {
		return err
	}
	if !ok {
		if err := c.MakeBucket(ctx, S3Bucket, minio.MakeBucketOptions{}); err != nil {
			return err
		}
	}
	const probe = "realsvc-probe"
	body := []byte("ready")
	if _, err := c.PutObject(ctx, S3Bucket, probe, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		return err
	}
	if _, err := c.StatObject(ctx, S3Bucket, probe, minio.StatObjectOptions{}); err != nil {
		return err
	}
	return c.RemoveObject(ctx, S3Bucket, probe, minio.RemoveObjectOptions{})
}

// weedBin finds the weed binary: $PARLEY_WEED, PATH, then .tmp/bin/weed
// in the module enclosing the working directory.
func weedBin() (string, error) {
	if p := os.Getenv(s3BinEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("realsvc: s3: $%s (install weed with `%s` at the repository root): %w", s3BinEnv, S3Install, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("weed"); err == nil {
		return p, nil
	}
	if dir, err := os.Getwd(); err == nil {
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				p := filepath.Join(dir, ".tmp", "bin", "weed")
				if _, err := os.Stat(p); err == nil {
					return p, nil
				}
				break
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("realsvc: s3: SeaweedFS's weed not found in $%s, on PATH or in .tmp/bin; "+
		"install it with `%s` at the repository root (builds it from its Go module, a few minutes the first time)", s3BinEnv, S3Install)
}

// freePorts asks the kernel for n distinct free loopback ports, holding
// them all open at once so none repeats. Another process may take one
// before the server binds it; StartS3 retries then.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// logTail is the end of a log file, for error messages.
func logTail(path string) string {
	b, _ := os.ReadFile(path)
	const max = 3000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(bytes.TrimSpace(b))
}
