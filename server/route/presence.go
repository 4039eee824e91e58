package route

import (
	"context"
	"log/slog"
	"time"

	"github.com/parley-im/parley/server/hub"
	"github.com/parley-im/parley/server/metrics"
)

// PresenceStore is what Presence needs from the presence backend
// (storage.PresenceStore).
type PresenceStore interface {
	SetOnline(ctx context.Context, userID, deviceID, node string, ttl time.Duration) error
	SetOffline(ctx context.Context, userID, deviceID, node string) error
	Online(ctx context.Context, userIDs []string) (map[string]bool, error)
}

// Presence records the devices connected to this process in the
// cluster-wide presence store, and answers who is online anywhere. Records
// expire after TTL unless refreshed, so the devices of a process that died
// go offline by themselves; Run refreshes them every TTL/3.
//
// Presence is advisory: when the store cannot be reached, users count as
// offline and the failure is logged.
type Presence struct {
	store PresenceStore
	hub   *hub.Hub
	node  string
	ttl   time.Duration
	log   *slog.Logger
	m     *metrics.Route
}

// NewPresence returns the presence of node's devices; ttl must be
// positive.
func NewPresence(store PresenceStore, h *hub.Hub, node string, ttl time.Duration, logger *slog.Logger) *Presence {
	return &Presence{store: store, hub: h, node: node, ttl: ttl, log: logger.With(slog.String("node", node))}
}

// SetMetrics makes Presence count its failures in m (nil: not counted).
// Call it before Run.
func (p *Presence) SetMetrics(m *metrics.Route) { p.m = m }

// Connected records a device as online on this process.
func (p *Presence) Connected(ctx context.Context, userID, deviceID string) {
	if err := p.store.SetOnline(ctx, userID, deviceID, p.node, p.ttl); err != nil {
		p.m.PresenceFailed(metrics.PresenceSetOnline)
		p.log.Warn("presence: set online", slog.String("user_id", userID), slog.Any("err", err))
	}
}

// Disconnected removes a device's record (unless it moved to another
// process meanwhile) and reports whether the user is still online on some
// device.
func (p *Presence) Disconnected(ctx context.Context, userID, deviceID string) (stillOnline bool) {
	if err := p.store.SetOffline(ctx, userID, deviceID, p.node); err != nil {
		p.m.PresenceFailed(metrics.PresenceSetOffline)
		p.log.Warn("presence: set offline", slog.String("user_id", userID), slog.Any("err", err))
	}
	return p.Online(ctx, []string{userID})[userID]
}

// Online reports which users have a device online anywhere.
func (p *Presence) Online(ctx context.Context, userIDs []string) map[string]bool {
	online, err := p.store.Online(ctx, userIDs)
	if err != nil {
		p.m.PresenceFailed(metrics.PresenceOnline)
		p.log.Warn("presence: online", slog.Int("users", len(userIDs)), slog.Any("err", err))
		return map[string]bool{}
	}
	return online
}

// Run refreshes the records of every device connected here every TTL/3
// until ctx ends.
func (p *Presence) Run(ctx context.Context) {
	t := time.NewTicker(p.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.refresh(ctx)
	}
}

// refresh renews the record of every device connected here, logging one
// line per round however many fail (Redis down fails them all).
func (p *Presence) refresh(ctx context.Context) {
	failed := 0
	var lastErr error
	p.hub.Each(func(c *hub.Conn) {
		if ctx.Err() != nil {
			return
		}
		if err := p.store.SetOnline(ctx, c.UserID(), c.DeviceID(), p.node, p.ttl); err != nil {
			failed++
			lastErr = err
		}
	})
	p.m.RefreshFailed(failed)
	if failed > 0 && ctx.Err() == nil {
		p.log.Warn("presence: refresh failed", slog.Int("devices", failed), slog.Any("err", lastErr))
	}
}
