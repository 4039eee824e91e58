package realsvc_test

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// redisDo sends one inline command and returns the first reply line.
func redisDo(t *testing.T, addr, cmd string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = conn.Write([]byte(cmd + "\r\n"))
	require.NoError(t, err)
	line, err := bufio.NewReader(conn).ReadString('\n')
	require.NoError(t, err)
	return line
}

func TestRedis(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		appendOnly bool
		afterGet   string // GET k after Restart
	}{
		{name: "without_persistence", appendOnly: false, afterGet: "$-1\r\n"},
		{name: "append_only", appendOnly: true, afterGet: "$1\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := realsvc.StartRedisTB(t, realsvc.RedisOptions{AppendOnly: tc.appendOnly})
			require.Equal(t, "+PONG\r\n", redisDo(t, r.Addr(), "PING"))
			require.Equal(t, "+OK\r\n", redisDo(t, r.Addr(), "SET k v"))

			addr := r.Addr()
			require.NoError(t, r.Restart())
			require.Equal(t, addr, r.Addr(), "restart keeps the port")
			require.Equal(t, tc.afterGet, redisDo(t, r.Addr(), "GET k"))

			require.NoError(t, r.Stop())
			require.NoError(t, r.Stop(), "Stop is idempotent")
			require.Error(t, r.Restart(), "no restart after Stop")
		})
	}
}
