// Command parley is a command-line client for a Parley server.
//
//	parley [-server URL] [-session FILE] <command> [args]
//
// Run "parley help" for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], env{
		stdout:  os.Stdout,
		stderr:  os.Stderr,
		getenv:  os.Getenv,
		homeDir: os.UserConfigDir,
	})
	stop()
	os.Exit(code)
}
