package hub

import (
	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/server/internal/fifo"
)

// keepCap is the buffer an emptied connection queue keeps for reuse; a
// larger one is given back, so a burst does not pin memory on an idle
// connection.
const keepCap = 64

// queue is a connection's outbound frames.
type queue = fifo.Queue[*parleyv1.ServerFrame]

func newQueue(max int) *queue { return fifo.New[*parleyv1.ServerFrame](max, keepCap) }

// storeShare is the part of the queue that frames read from the store
// (catch-up, repair) may fill. They wait for room, while live frames are
// never waited for: a backlog that filled the whole queue would get the
// device dropped as a slow consumer by the next live message.
func storeShare(q *queue) int { return max(q.Max()/2, 1) }
