package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parley-im/parley/server/testserver"
	"github.com/stretchr/testify/require"
)

const (
	// readmePath is the README, relative to this package's directory.
	readmePath = "../../README.md"
	// readmeSection is the heading whose examples TestReadme runs.
	readmeSection = "### The API with grpcurl and buf curl"
	// readmeAddr is the address the examples use; the test swaps in its
	// server's.
	readmeAddr = "127.0.0.1:8080"
	// readmeBlockTimeout bounds each example.
	readmeBlockTimeout = 60 * time.Second
)

// readmeTools are the programs the examples run, with how to install them.
var readmeTools = map[string]string{
	"grpcurl": "go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4 (or `make tools`, which puts it in .tmp/bin)",
	"buf":     "cd clients && npm ci (buf lands in clients/node_modules/.bin; `make tools` does this)",
	"bash":    "apt-get install -y bash",
}

// readmeExample says how to run one README block and what its output must
// show. A block whose expectation sets until is a stream: it gets a stdin
// that stays open (the README's trailing `cat` reads it) until the output
// contains until, and is then closed to end the stream.
type readmeExample struct {
	until string
	check func(t *testing.T, out string, vars map[string]string)
}

// readmeExamples holds an expectation for every `readme-test: NAME` block, in
// README order. The test fails if a block has none, or one has no block.
var readmeExamples = map[string]readmeExample{
	"grpcurl-list": {check: func(t *testing.T, out string, _ map[string]string) {
		requireContainsAll(t, out,
			"grpc.health.v1.Health\n", "grpc.reflection.v1.ServerReflection\n",
			"parley.v1.AuthService\n", "parley.v1.ChatService\n", "parley.v1.ConversationService\n",
			`"status": "SERVING"`)
	}},
	"grpcurl-register": {check: func(t *testing.T, out string, _ map[string]string) {
		requireContainsAll(t, out, `"username": "alice"`, `"username": "bob"`, `"deviceId": "`)
		require.Len(t, regexp.MustCompile(`"accessToken": "[^"]+"`).FindAllString(out, -1), 2, out)
		require.Len(t, regexp.MustCompile(`"refreshToken": "[^"]+"`).FindAllString(out, -1), 2, out)
	}},
	"grpcurl-login": {check: func(t *testing.T, out string, vars map[string]string) {
		require.Regexp(t, `^eyJ[\w-]+\.[\w-]+\.[\w-]+$`, vars["TOKEN"], "TOKEN is not a JWT")
		require.NotEmpty(t, vars["CONV"], "CONV")
		require.Equal(t, "conversation "+vars["CONV"]+"\n", out)
	}},
	"grpcurl-send": {check: func(t *testing.T, out string, vars map[string]string) {
		requireContainsAll(t, out, `"conversationId": "`+vars["CONV"]+`"`, `"clientMsgId": "readme-1"`,
			`"kind": "MESSAGE_KIND_TEXT"`, `"text": "hello bob"`, `"seq": "`)
		require.NotContains(t, out, `"duplicate"`)
	}},
	"grpcurl-connect": {until: `"sendAck"`, check: func(t *testing.T, out string, _ map[string]string) {
		requireInOrder(t, out, `"welcome"`, `"text": "hello bob"`, `"syncComplete"`)
		requireContainsAll(t, out, `"pong": {`, `"nonce": "1"`, `"clientMsgId": "readme-2"`, `"text": "hi from the stream"`)
	}},
	"buf-list": {check: func(t *testing.T, out string, _ map[string]string) {
		requireContainsAll(t, out, "grpc.health.v1.Health\n", "parley.v1.ChatService\n", `"status": "SERVING"`)
	}},
	"buf-send": {check: func(t *testing.T, out string, vars map[string]string) {
		require.Regexp(t, `^eyJ[\w-]+\.[\w-]+\.[\w-]+$`, vars["BOB_TOKEN"], "BOB_TOKEN is not a JWT")
		require.NotEqual(t, vars["TOKEN"], vars["BOB_TOKEN"])
		requireContainsAll(t, out, `"conversationId": "`+vars["CONV"]+`"`, `"clientMsgId": "readme-3"`, `"text": "hi alice"`)
	}},
	"buf-connect": {until: `"sendAck"`, check: func(t *testing.T, out string, _ map[string]string) {
		// Bob's catch-up holds the whole conversation, then his own send.
		requireInOrder(t, out, `"welcome"`, `"text": "hello bob"`, `"text": "hi from the stream"`,
			`"text": "hi alice"`, `"syncComplete"`, `"sendAck"`)
		requireContainsAll(t, out, `"clientMsgId": "readme-4"`, `"text": "see you"`)
	}},
}

// readmeBlock is one marked ```sh block of the README.
type readmeBlock struct {
	name   string
	line   int // of the marker, for messages
	script string
}

// TestReadme runs the README's grpcurl and buf curl examples, in order and
// sharing shell variables as a reader's terminal would, against a real
// parleyd, so the README stays true.
func TestReadme(t *testing.T) {
	path := readmeToolsPath(t)
	blocks := readmeBlocks(t)

	srv := testserver.Start(t)
	env := append(withoutPATH(os.Environ()), "PATH="+path)
	for _, block := range blocks {
		ok := t.Run(block.name, func(t *testing.T) {
			example := readmeExamples[block.name]
			script := strings.ReplaceAll(block.script, readmeAddr, srv.Addr())
			var out string
			out, env = runReadmeBlock(t, script, env, example.until)
			example.check(t, out, envMap(env))
		})
		if !ok {
			t.Fatalf("README.md:%d (%s) failed; the examples after it depend on it", block.line, block.name)
		}
	}
}

// readmeBlocks returns the marked blocks of readmeSection, checking that
// every ```sh block there is marked and that blocks and readmeExamples match
// one to one.
func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	data, err := os.ReadFile(readmePath)
	require.NoError(t, err)

	var (
		blocks    []readmeBlock
		inSection bool
		marker    string
		markLine  int
		block     *readmeBlock
	)
	markerRE := regexp.MustCompile(`^<!-- readme-test: ([a-z0-9-]+) -->$`)
	scanner := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; scanner.Scan(); n++ {
		line := scanner.Text()
		switch {
		case block != nil:
			if line == "```" {
				blocks = append(blocks, *block)
				block = nil
			} else {
				block.script += line + "\n"
			}
		case strings.HasPrefix(line, "#"):
			inSection = line == readmeSection
		case !inSection:
		case markerRE.MatchString(line):
			marker, markLine = markerRE.FindStringSubmatch(line)[1], n
		case line == "```sh":
			require.NotEmpty(t, marker, "README.md:%d: a ```sh block in %q has no <!-- readme-test: NAME --> line before it", n, readmeSection)
			block = &readmeBlock{name: marker, line: markLine}
			marker = ""
		case strings.TrimSpace(line) != "" && marker != "":
			t.Fatalf("README.md:%d: text between the readme-test marker of line %d and its ```sh block", n, markLine)
		}
	}
	require.NoError(t, scanner.Err())
	require.Nil(t, block, "README.md: unterminated ```sh block")
	require.NotEmpty(t, blocks, "README.md has no %q section with marked examples", readmeSection)

	seen := make(map[string]bool)
	for _, b := range blocks {
		require.False(t, seen[b.name], "README.md:%d: a second block named %q", b.line, b.name)
		seen[b.name] = true
		_, ok := readmeExamples[b.name]
		require.True(t, ok, "README.md:%d: block %q has no expectation in readmeExamples (readme_test.go)", b.line, b.name)
	}
	for name := range readmeExamples {
		require.True(t, seen[name], "readmeExamples has %q but README.md has no such block", name)
	}
	return blocks
}

// runReadmeBlock runs script with bash in env and returns its stdout and the
// environment it leaves (set -a exports every variable and function it
// defines). With until set, stdin stays open until stdout contains until.
func runReadmeBlock(t *testing.T, script string, env []string, until string) (string, []string) {
	t.Helper()
	state := filepath.Join(t.TempDir(), "env")
	ctx, cancel := context.WithTimeout(t.Context(), readmeBlockTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", "set -a -euo pipefail\n"+script+"env -0 >\"$README_TEST_STATE\"\n")
	cmd.Env = append(slices.Clip(env), "README_TEST_STATE="+state)
	// Kill the whole group on timeout: grpcurl and buf are children of bash.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	stdout := &watchBuffer{until: until, found: make(chan struct{})}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = stdout, &stderr

	var err error
	if until == "" {
		err = cmd.Run()
	} else {
		err = runStream(ctx, cmd, stdout)
	}
	out := stdout.String()
	require.NoError(t, err, "script:\n%s\nstdout:\n%s\nstderr:\n%s", script, out, stderr.String())

	data, err := os.ReadFile(state)
	require.NoError(t, err)
	var next []string
	for _, kv := range strings.Split(string(data), "\x00") {
		if kv != "" && !strings.HasPrefix(kv, "README_TEST_STATE=") {
			next = append(next, kv)
		}
	}
	return out, next
}

// runStream runs cmd with a stdin it holds open until stdout has seen its
// marker, then closes it so that the stream ends as a reader's Ctrl-D would.
func runStream(ctx context.Context, cmd *exec.Cmd, stdout *watchBuffer) error {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	// Owned here: it ends when the process does, which the select below or
	// the context's kill brings about, and is waited for before returning.
	go func() { exited <- cmd.Wait() }()
	select {
	case <-stdout.found:
		_ = stdin.Close()
		return <-exited
	case err := <-exited:
		_ = stdin.Close()
		if err == nil {
			err = errors.New("exit status 0")
		}
		return fmt.Errorf("the stream ended before the output showed %s: %w", stdout.until, err)
	case <-ctx.Done():
		_ = stdin.Close()
		err := <-exited // killed by the context
		return fmt.Errorf("output did not show %s within %v (%w)", stdout.until, readmeBlockTimeout, err)
	}
}

// readmeToolsPath returns PATH with the repository's tool directories in
// front (where `make tools` installs), and fails the test, with the install
// command, for a tool that is still missing. A missing tool is never a skip:
// the README would go unchecked.
func readmeToolsPath(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	path := strings.Join([]string{
		filepath.Join(root, ".tmp", "bin"),
		filepath.Join(root, "clients", "ts", "node_modules", ".bin"),
		os.Getenv("PATH"),
	}, string(os.PathListSeparator))
	for tool, install := range readmeTools {
		if _, err := lookPath(tool, path); err != nil {
			t.Errorf("%s is not on PATH; the README examples need it. Install it: %s", tool, install)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return path
}

func lookPath(file, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, file)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

func withoutPATH(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "PATH=") {
			out = append(out, kv)
		}
	}
	return out
}

func envMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

func requireContainsAll(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		require.Contains(t, out, w)
	}
}

// requireInOrder checks that want appear in out in this order.
func requireInOrder(t *testing.T, out string, want ...string) {
	t.Helper()
	rest := out
	for _, w := range want {
		i := strings.Index(rest, w)
		require.GreaterOrEqual(t, i, 0, "%s missing, or not after %v, in:\n%s", w, want, out)
		rest = rest[i+len(w):]
	}
}

// watchBuffer collects a process's stdout and closes found once it contains
// until.
type watchBuffer struct {
	until string
	found chan struct{}

	mu   sync.Mutex
	buf  bytes.Buffer
	done bool
}

func (w *watchBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.done && w.until != "" && bytes.Contains(w.buf.Bytes(), []byte(w.until)) {
		w.done = true
		close(w.found)
	}
	return len(p), nil
}

func (w *watchBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
