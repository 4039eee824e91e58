package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
)

// EnvWorker is set, to the worker's number, in the environment of a worker
// process; main serves the worker protocol instead of running a scenario
// when it finds it.
const EnvWorker = "PARLEY_LOADTEST_WORKER"

// envelope is one line of the worker protocol: a request (ID, Op, Args)
// from the coordinator, or the response (ID, Result or Err) from the
// worker. Requests are served concurrently; responses carry their
// request's ID.
type envelope struct {
	ID     uint64          `json:"id"`
	Op     string          `json:"op,omitempty"`
	Args   json.RawMessage `json:"args,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Err    string          `json:"err,omitempty"`
}

// Serve runs w behind the worker protocol: requests from in, responses to
// out, until in ends (the coordinator exited or closed it) or a close
// request was answered. It closes w before returning.
func Serve(ctx context.Context, w *Worker, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dec := json.NewDecoder(bufio.NewReaderSize(in, 1<<20))
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer func() { _ = w.Close(context.Background()) }()
	for {
		var req envelope
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("worker: read request: %w", err)
		}
		closing := req.Op == "close"
		serve := func() {
			result, err := dispatch(ctx, w, req.Op, req.Args)
			res := envelope{ID: req.ID, Result: result}
			if err != nil {
				res.Err = err.Error()
			}
			mu.Lock()
			defer mu.Unlock()
			_ = enc.Encode(res) // the coordinator is gone if this fails
		}
		if closing {
			wg.Wait()
			serve()
			return nil
		}
		wg.Go(serve)
	}
}

func dispatch(ctx context.Context, w *Worker, op string, args json.RawMessage) (json.RawMessage, error) {
	var result any
	var err error
	switch op {
	case "init":
		var a InitArgs
		if err = json.Unmarshal(args, &a); err == nil {
			err = w.Init(ctx, a)
		}
	case "connect":
		var a ConnectArgs
		if err = json.Unmarshal(args, &a); err == nil {
			result, err = w.Connect(ctx, a)
		}
	case "idle":
		var a IdleArgs
		if err = json.Unmarshal(args, &a); err == nil {
			result, err = w.Idle(ctx, a)
		}
	case "disconnect":
		var a DevicesArgs
		if err = json.Unmarshal(args, &a); err == nil {
			err = w.Disconnect(ctx, a)
		}
	case "send":
		var a SendArgs
		if err = json.Unmarshal(args, &a); err == nil {
			result, err = w.Send(ctx, a)
		}
	case "drain":
		var a DrainArgs
		if err = json.Unmarshal(args, &a); err == nil {
			result, err = w.Drain(ctx, a)
		}
	case "collect":
		result, err = w.Collect(ctx)
	case "check":
		var a CheckArgs
		if err = json.Unmarshal(args, &a); err == nil {
			result, err = w.Check(ctx, a)
		}
	case "progress":
		result, err = w.Progress(ctx)
	case "close":
		err = w.Close(ctx)
	default:
		err = fmt.Errorf("worker: unknown op %q", op)
	}
	if err != nil {
		return nil, err
	}
	if result == nil {
		return nil, nil
	}
	b, err := json.Marshal(result)
	if err != nil {
		return nil, fmt.Errorf("worker: encode %s result: %w", op, err)
	}
	return b, nil
}

// Remote is a worker in a child process: this executable, started with
// EnvWorker set. It is safe for concurrent use.
type Remote struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	done chan struct{} // closed when the response reader ends

	mu      sync.Mutex
	enc     *json.Encoder
	next    uint64
	waiting map[uint64]chan envelope
	err     error // why the reader ended
}

// StartRemote starts worker process number id from the executable exe
// (normally os.Executable()); its stderr (logs) goes to stderr.
func StartRemote(id int, exe string, args []string, stderr io.Writer) (*Remote, error) {
	cmd := exec.Command(exe, args...) //nolint:gosec // this very program
	cmd.Env = append(os.Environ(), EnvWorker+"="+strconv.Itoa(id))
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("worker: start process %d: %w", id, err)
	}
	r := &Remote{cmd: cmd, in: in, done: make(chan struct{}), enc: json.NewEncoder(in), waiting: map[uint64]chan envelope{}}
	go r.read(out)
	return r, nil
}

func (r *Remote) read(out io.Reader) {
	defer close(r.done)
	dec := json.NewDecoder(bufio.NewReaderSize(out, 1<<20))
	var err error
	for {
		var res envelope
		if err = dec.Decode(&res); err != nil {
			break
		}
		r.mu.Lock()
		ch := r.waiting[res.ID]
		delete(r.waiting, res.ID)
		r.mu.Unlock()
		if ch != nil {
			ch <- res
		}
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("worker process exited")
	}
	r.mu.Lock()
	r.err = err
	for id, ch := range r.waiting {
		delete(r.waiting, id)
		ch <- envelope{ID: id, Err: err.Error()}
	}
	r.mu.Unlock()
}

// call sends a request and waits for its response.
func (r *Remote) call(ctx context.Context, op string, args, result any) error {
	var raw json.RawMessage
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return fmt.Errorf("worker: encode %s: %w", op, err)
		}
		raw = b
	}
	ch := make(chan envelope, 1)
	r.mu.Lock()
	if r.err != nil {
		err := r.err
		r.mu.Unlock()
		return fmt.Errorf("worker: %s: %w", op, err)
	}
	r.next++
	id := r.next
	r.waiting[id] = ch
	err := r.enc.Encode(envelope{ID: id, Op: op, Args: raw})
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("worker: send %s: %w", op, err)
	}
	select {
	case res := <-ch:
		if res.Err != "" {
			return fmt.Errorf("worker %s: %s", op, res.Err)
		}
		if result != nil && len(res.Result) > 0 {
			if err := json.Unmarshal(res.Result, result); err != nil {
				return fmt.Errorf("worker: decode %s: %w", op, err)
			}
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Remote) Init(ctx context.Context, a InitArgs) error { return r.call(ctx, "init", a, nil) }

func (r *Remote) Connect(ctx context.Context, a ConnectArgs) (res ConnectResult, err error) {
	err = r.call(ctx, "connect", a, &res)
	return res, err
}

func (r *Remote) Idle(ctx context.Context, a IdleArgs) (res IdleResult, err error) {
	err = r.call(ctx, "idle", a, &res)
	return res, err
}

func (r *Remote) Disconnect(ctx context.Context, a DevicesArgs) error {
	return r.call(ctx, "disconnect", a, nil)
}

func (r *Remote) Send(ctx context.Context, a SendArgs) (res SendResult, err error) {
	err = r.call(ctx, "send", a, &res)
	return res, err
}

func (r *Remote) Drain(ctx context.Context, a DrainArgs) (res DrainResult, err error) {
	err = r.call(ctx, "drain", a, &res)
	return res, err
}

func (r *Remote) Collect(ctx context.Context) (res CollectResult, err error) {
	err = r.call(ctx, "collect", nil, &res)
	return res, err
}

func (r *Remote) Check(ctx context.Context, a CheckArgs) (res CheckResult, err error) {
	err = r.call(ctx, "check", a, &res)
	return res, err
}

func (r *Remote) Progress(ctx context.Context) (res Progress, err error) {
	err = r.call(ctx, "progress", nil, &res)
	return res, err
}

// Close closes the worker's devices, then ends the process (killing it if
// it does not exit on its own).
func (r *Remote) Close(ctx context.Context) error {
	err := r.call(ctx, "close", nil, nil)
	_ = r.in.Close()
	select {
	case <-r.done:
	case <-ctx.Done():
		_ = r.cmd.Process.Kill()
	}
	werr := r.cmd.Wait()
	if err != nil {
		return err
	}
	return werr
}

// Kill ends the process at once.
func (r *Remote) Kill() {
	_ = r.cmd.Process.Kill()
}
