package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/parley-im/parley/loadtest/internal/client"
	"github.com/parley-im/parley/loadtest/internal/scenario"
	"github.com/parley-im/parley/loadtest/internal/spawn"
)

// options are the command line.
type options struct {
	scenario.Config
	server      string
	spawnKind   string
	shards      int
	parleyd     string
	sourceAddrs string
	metrics     string
	serverPIDs  string
	jsonPath    string
	mdPath      string
	timeout     time.Duration
	verbose     bool
	cpuProfile  string
}

// defaults are the scenario-specific defaults, applied to flags the
// command line leaves unset.
var defaults = map[string]map[string]string{
	scenario.Conns:     {"conns": "1000", "duration": "10s", "connect-timeout": "20s"},
	scenario.P2P:       {"pairs": "100", "rate": "1000", "duration": "10s"},
	scenario.Group:     {"group-size": "100", "senders": "1", "rate": "10", "duration": "10s"},
	scenario.Reconnect: {"devices": "1", "messages": "10000"},
	scenario.Smoke:     {"pairs": "3", "group-size": "8", "senders": "2", "devices": "1", "messages": "300", "rate": "100", "duration": "2s"},
}

const usageHead = `Usage: go run ./loadtest <scenario> [flags]

Scenarios:
  conns      hold -conns idle authenticated streams; server memory per stream
  p2p        -pairs pairs exchange 1:1 messages at -rate msgs/s (open loop);
             -find-max steps the rate until p99 passes -p99-bound
  group      -senders members of a -group-size group send at -rate msgs/s;
             fan-out latency until every member has a message
  reconnect  -devices devices miss -messages messages each, then reconnect
             at once; time until all caught up
  smoke      a short mixed run that must lose nothing (exit status 1 if it does)

Servers: -spawn embedded|postgres|cluster builds and starts parleyd itself
(with its abuse limits off); -server URL[,URL…] targets running ones (one
URL per shard, in shard order; loopback only). A server you started must
run with PARLEY_AUTH_ADDRESS_ATTEMPT_BURST=0 and PARLEY_CHAT_SEND_RATE=0,
or registrations and sends hit its rate limits.

Flags:
`

// parseFlags parses the command line: the scenario, then flags.
func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHead)
		fs.PrintDefaults()
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fs.Usage()
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return nil, flag.ErrHelp
		}
		return nil, errors.New("name a scenario first")
	}
	o := &options{}
	o.Scenario = args[0]
	if _, ok := defaults[o.Scenario]; !ok {
		fs.Usage()
		return nil, fmt.Errorf("unknown scenario %q", o.Scenario)
	}
	c := &o.Config
	fs.StringVar(&o.server, "server", "", "base `URLs` of running servers, comma-separated, one per shard in shard order")
	fs.StringVar(&o.spawnKind, "spawn", "", "start parleyd: embedded, postgres or cluster (2 shards on PostgreSQL and Redis)")
	fs.IntVar(&o.shards, "shards", 2, "shards (one process each) of -spawn cluster")
	fs.StringVar(&o.parleyd, "parleyd", "", "parleyd `binary` for -spawn (default: go build ./server/cmd/parleyd)")
	fs.StringVar(&c.Transport, "transport", client.Connect, "client stack: connect (the Go SDK, Connect over HTTP/2) or grpc (grpc-go)")
	fs.IntVar(&c.Procs, "procs", 1, "generator processes (each holds at most ~19,900 connections)")
	fs.StringVar(&o.sourceAddrs, "source-addrs", "", "loopback `addresses` to dial from, e.g. 127.0.0.2-127.0.0.9 (each has ~28,000 ephemeral ports)")
	fs.StringVar(&o.metrics, "metrics", "", "Prometheus `URLs` of the servers (process_resident_memory_bytes, go_goroutines)")
	fs.StringVar(&o.serverPIDs, "server-pid", "", "`pids` of the servers on this machine (RSS and open files from /proc)")
	fs.StringVar(&o.jsonPath, "json", "", "write the result as JSON to `file`")
	fs.StringVar(&o.mdPath, "md", "", "write the Markdown summary to `file`")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up on the whole run after this long")
	fs.BoolVar(&o.verbose, "v", false, "log the generator's lifecycle (info level)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the generator's CPU profile (this process) to `file`")

	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "how long to send (conns: to hold the streams)")
	fs.Float64Var(&c.Rate, "rate", 1000, "target msgs/s, all senders together (p2p -find-max: the first step)")
	fs.IntVar(&c.Size, "size", 64, "message text `bytes`")
	fs.DurationVar(&c.AckInterval, "ack-interval", 50*time.Millisecond, "how often a device acks what it received (also after every 64 messages; the SDK's default)")
	fs.IntVar(&c.Conns, "conns", 1000, "conns: streams to hold")
	fs.IntVar(&c.Concurrency, "concurrency", 64, "conns: streams opened at once")
	fs.IntVar(&c.Pairs, "pairs", 100, "p2p: pairs of users")
	fs.BoolVar(&c.FindMax, "find-max", false, "p2p: step the rate up until p99 passes -p99-bound or deliveries fall behind")
	fs.DurationVar(&c.Step, "step", 5*time.Second, "p2p -find-max: duration of a step")
	fs.Float64Var(&c.StepFactor, "step-factor", 1.5, "p2p -find-max: rate multiplier per step")
	fs.DurationVar(&c.P99Bound, "p99-bound", 50*time.Millisecond, "p2p: the p99 send→deliver latency a sustainable rate stays under")
	fs.IntVar(&c.MaxSteps, "max-steps", 12, "p2p -find-max: most steps")
	fs.IntVar(&c.GroupSize, "group-size", 100, "group: members, owner included")
	fs.IntVar(&c.Senders, "senders", 1, "group: members that send")
	fs.IntVar(&c.Devices, "devices", 1, "reconnect: devices that go offline")
	fs.IntVar(&c.Messages, "messages", 0, "reconnect: messages each device misses; group: messages to send (default -rate × -duration)")
	fs.IntVar(&c.Convs, "convs", 0, "reconnect: conversations per device the missed messages spread over (default one per 1,000)")
	fs.IntVar(&c.Window, "window", 64, "closed-loop sends in flight per sending device (reconnect's offline phase)")
	fs.DurationVar(&c.SendTimeout, "send-timeout", 30*time.Second, "give up on one send after this long")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 30*time.Second, "wait this long for deliveries after sending, and before checking")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", 60*time.Second, "wait this long for a device to connect and catch up")
	if err := fs.Parse(args[1:]); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, value := range defaults[o.Scenario] {
		if !set[name] {
			if err := fs.Set(name, value); err != nil {
				return nil, err
			}
		}
	}
	return o, o.validate()
}

func (o *options) validate() error {
	c := &o.Config
	switch {
	case (o.server == "") == (o.spawnKind == ""):
		return errors.New("give exactly one of -server and -spawn")
	case o.spawnKind != "" && o.spawnKind != spawn.Embedded && o.spawnKind != spawn.Postgres && o.spawnKind != spawn.Cluster:
		return fmt.Errorf("-spawn %q: want embedded, postgres or cluster", o.spawnKind)
	case c.Transport != client.Connect && c.Transport != client.GRPC:
		return fmt.Errorf("-transport %q: want connect or grpc", c.Transport)
	case c.Rate <= 0 && o.Scenario != scenario.Conns && o.Scenario != scenario.Reconnect:
		return errors.New("-rate must be positive")
	case c.Pairs < 1 || c.Conns < 1 || c.GroupSize < 2 || c.Senders < 1 || c.Devices < 1 || c.Window < 1 || c.Concurrency < 1:
		return errors.New("-pairs, -conns, -senders, -devices, -window and -concurrency must be at least 1, -group-size at least 2")
	case o.Scenario == scenario.Reconnect && c.Messages < 1:
		return errors.New("-messages must be at least 1")
	case c.StepFactor <= 1:
		return errors.New("-step-factor must exceed 1")
	case c.Procs > 64:
		return errors.New("-procs: at most 64")
	}
	if o.server != "" {
		for _, s := range strings.Split(o.server, ",") {
			if err := loopbackURL(s); err != nil {
				return err
			}
			c.Servers = append(c.Servers, s)
		}
	}
	addrs, err := parseAddrs(o.sourceAddrs)
	if err != nil {
		return err
	}
	c.SourceAddrs = addrs
	return nil
}

// loopbackURL accepts http:// URLs of loopback hosts only: load goes
// nowhere else.
func loopbackURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("-server %q: %w", s, err)
	}
	if u.Scheme != "http" {
		return fmt.Errorf("-server %q: want http:// (h2c on loopback)", s)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("-server %q: load goes to loopback addresses only", s)
	}
	return nil
}

// parseAddrs reads "127.0.0.2-127.0.0.9" or "127.0.0.2,127.0.0.3".
func parseAddrs(s string) ([]netip.Addr, error) {
	if s == "" {
		return nil, nil
	}
	var out []netip.Addr
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		from, err := netip.ParseAddr(lo)
		if err != nil {
			return nil, fmt.Errorf("-source-addrs: %w", err)
		}
		to := from
		if isRange {
			if to, err = netip.ParseAddr(hi); err != nil {
				return nil, fmt.Errorf("-source-addrs: %w", err)
			}
		}
		for a := from; a.Compare(to) <= 0; a = a.Next() {
			if !a.IsLoopback() {
				return nil, fmt.Errorf("-source-addrs: %s is not a loopback address", a)
			}
			out = append(out, a)
			if len(out) > 1024 {
				return nil, errors.New("-source-addrs: more than 1,024 addresses")
			}
		}
	}
	return out, nil
}

// splitInts reads comma-separated integers.
func splitInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}
