package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"connectrpc.com/connect/v2"

	"github.com/parley-im/parley/clients/go/parley"
)

const defaultServer = "http://127.0.0.1:8080"

const usage = `usage: parley [-server URL] [-session FILE] <command> [args]

commands:
  register USER [PASSWORD]      create an account and sign in (-password, PARLEY_PASSWORD)
  login USER [PASSWORD]         sign this machine in (-password, PARLEY_PASSWORD)
  logout                        sign out and forget the stored tokens
  whoami                        show the signed-in user and device
  dm USER                       print the id of the direct conversation with USER
  group create TITLE [USER...]  create a group, print its id
  group add CONV USER...        add members to a group
  group remove CONV USER        remove a member from a group
  conversations                 list conversations with unread counts
  send CONV TEXT...             send a text message
  send-file CONV PATH [TEXT...] upload a file and send it (as an image when the
                                server detects JPEG, PNG, GIF or WebP), with an
                                optional caption; prints the media id and seq
  download [-o PATH] [-thumb] [-f] MEDIA_ID
                                save a file or image (-thumb: its thumbnail); by
                                default under its own name in the current
                                directory, never overwriting without -f
  history CONV [-limit N]       print the latest messages of a conversation
  search [-conv CONV] [-limit N] [-page TOKEN] WORDS...
                                find messages by their words, newest first; the
                                matching words are shown in [brackets]
  listen                        print incoming events until interrupted

environment: PARLEY_SERVER, PARLEY_SESSION, PARLEY_PASSWORD
`

// errUsage marks a command-line mistake (exit status 2).
var errUsage = errors.New("usage")

// env is what the process gives the program; only main reads the real one.
type env struct {
	stdout  io.Writer
	stderr  io.Writer
	getenv  func(string) string
	homeDir func() (string, error) // os.UserConfigDir
}

// app is one invocation: the global flags resolved.
type app struct {
	env
	server  string
	store   *store
	options []parley.Option
}

// run executes one command line and returns the exit status.
func run(ctx context.Context, args []string, e env) int {
	fs := flag.NewFlagSet("parley", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(e.stderr, usage) }
	server := fs.String("server", firstNonEmpty(e.getenv("PARLEY_SERVER"), defaultServer), "server URL")
	sessionFile := fs.String("session", e.getenv("PARLEY_SESSION"), "token file (default: <user config dir>/parley/session.json)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprint(e.stderr, usage)
		return 2
	}
	path := *sessionFile
	if path == "" {
		dir, err := e.homeDir()
		if err != nil {
			fmt.Fprintf(e.stderr, "parley: no config dir (use -session): %v\n", err)
			return 1
		}
		path = filepath.Join(dir, "parley", "session.json")
	}
	a := &app{env: e, server: strings.TrimRight(*server, "/"), store: &store{path: path}}
	err := a.dispatch(ctx, fs.Arg(0), fs.Args()[1:])
	return a.report(err)
}

func (a *app) dispatch(ctx context.Context, cmd string, args []string) error {
	switch cmd {
	case "help", "-h", "--help":
		fmt.Fprint(a.stdout, usage)
		return nil
	case "register":
		return a.register(ctx, args)
	case "login":
		return a.login(ctx, args)
	case "logout":
		return a.logout(ctx, args)
	case "whoami":
		return a.whoami(args)
	case "dm":
		return a.dm(ctx, args)
	case "group":
		return a.group(ctx, args)
	case "conversations", "convs":
		return a.conversations(ctx, args)
	case "send":
		return a.send(ctx, args)
	case "send-file":
		return a.sendFile(ctx, args)
	case "download":
		return a.download(ctx, args)
	case "history":
		return a.history(ctx, args)
	case "search":
		return a.search(ctx, args)
	case "listen":
		return a.listen(ctx, args)
	}
	return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
}

// report prints err and returns the exit status: the Connect code and message
// for server errors.
func (a *app) report(err error) int {
	if err == nil {
		return 0
	}
	if errors.Is(err, errUsage) {
		fmt.Fprintf(a.stderr, "parley: %v\n\n%s", err, usage)
		return 2
	}
	if errors.Is(err, context.Canceled) {
		return 130
	}
	if cerr, ok := errors.AsType[*connect.Error](err); ok {
		fmt.Fprintf(a.stderr, "parley: %s: %s\n", cerr.Code(), cerr.Message())
		if errors.Is(err, parley.ErrRevoked) {
			fmt.Fprintln(a.stderr, "parley: the session is no longer valid; run \"parley login USER\"")
		}
		return 1
	}
	fmt.Fprintf(a.stderr, "parley: %v\n", err)
	return 1
}

// client resumes the stored session for the server; refreshed tokens are
// written back.
func (a *app) client() (*parley.Client, error) {
	creds, ok, err := a.store.get(a.server)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("not signed in to %s: run \"parley login USER\"", a.server)
	}
	hook := parley.WithCredentialsHook(func(c parley.Credentials) {
		if err := a.store.put(a.server, c); err != nil {
			fmt.Fprintf(a.stderr, "parley: saving refreshed tokens: %v\n", err)
		}
	})
	return parley.Resume(a.server, creds, append([]parley.Option{hook}, a.options...)...)
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// parseInterspersed parses flags that may appear before, between or after
// positional arguments, and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%w: %w", errUsage, err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if rest[0] == "--" {
			return append(positional, rest[1:]...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

func newFlagSet(name string, e env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return fs
}
