package parley_test

import (
	"os"
	"testing"

	"github.com/parley-im/parley/server/testserver"
)

// The media tests run the real parleyd (server/testserver: built once per
// test binary with -race, on a free loopback port, its own data directory).
func TestMain(m *testing.M) { os.Exit(testserver.Run(m)) }

type parleyd struct {
	url     string
	dataDir string
}

// startParleyd starts parleyd on the embedded store; the test's cleanup
// stops it.
func startParleyd(t *testing.T) *parleyd {
	t.Helper()
	s := testserver.Start(t)
	return &parleyd{url: s.URL(), dataDir: s.DataDir()}
}
