// Package e2e_test runs parleyd as a real process on loopback (through
// server/internal/testserver) and drives it with the Go SDK over HTTP/2, the
// way an outside client would.
package e2e_test

import (
	"os"
	"testing"
	"time"

	"github.com/parley-im/parley/server/testserver"
)

// waitTimeout bounds every wait on an event; nothing sleeps.
const waitTimeout = 30 * time.Second

func TestMain(m *testing.M) { os.Exit(testserver.Run(m)) }

// startParleyd starts a server with extra parleyd flags; it is killed when the
// test ends.
func startParleyd(t testing.TB, args ...string) *testserver.Server {
	t.Helper()
	return testserver.Start(t, testserver.WithArgs(args...))
}
