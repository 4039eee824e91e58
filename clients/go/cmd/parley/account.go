package main

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect/v2"

	"github.com/parley-im/parley/clients/go/parley"
)

func (a *app) register(ctx context.Context, args []string) error {
	return a.signIn(ctx, "register", args, parley.Register)
}

func (a *app) login(ctx context.Context, args []string) error {
	return a.signIn(ctx, "login", args, parley.Login)
}

type signInFunc func(ctx context.Context, baseURL, username, password string, opts ...parley.Option) (*parley.Client, error)

// signIn runs register or login and stores the device's credentials.
func (a *app) signIn(ctx context.Context, name string, args []string, do signInFunc) error {
	fs := newFlagSet(name, a.env)
	password := fs.String("password", "", "password (or PARLEY_PASSWORD)")
	device := fs.String("device", "cli", "device name")
	display := fs.String("display-name", "", "display name (register only)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 {
		return fmt.Errorf("%w: %s USER [PASSWORD]", errUsage, name)
	}
	pw := firstNonEmpty(*password, a.getenv("PARLEY_PASSWORD"))
	if len(pos) == 2 {
		pw = pos[1]
	}
	if pw == "" {
		return fmt.Errorf("%w: %s needs a password: -password, PARLEY_PASSWORD or a second argument", errUsage, name)
	}
	opts := append([]parley.Option{parley.WithDeviceName(*device), parley.WithDisplayName(*display)}, a.options...)
	client, err := do(ctx, a.server, pos[0], pw, opts...)
	if err != nil {
		return err
	}
	creds := client.Credentials()
	if err := a.store.put(a.server, creds); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "signed in as %s (user %s, device %s)\n", creds.Username, creds.UserID, creds.DeviceID)
	return nil
}

func (a *app) logout(ctx context.Context, args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("%w: logout takes no arguments", errUsage)
	}
	client, err := a.client()
	if err != nil {
		return err
	}
	err = client.Logout(ctx)
	// A session the server already revoked is as good as logged out.
	if err != nil && !errors.Is(err, parley.ErrRevoked) && connect.CodeOf(err) != connect.CodeUnauthenticated {
		return err
	}
	if err := a.store.remove(a.server); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, "signed out")
	return nil
}

func (a *app) whoami(args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("%w: whoami takes no arguments", errUsage)
	}
	creds, ok, err := a.store.get(a.server)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("not signed in to %s", a.server)
	}
	fmt.Fprintf(a.stdout, "%s (user %s, device %s) on %s\n", creds.Username, creds.UserID, creds.DeviceID, a.server)
	return nil
}
