// Package shard maps users to the shards of a cluster.
//
// The map is Lamping and Veach's jump consistent hash over a 64-bit FNV-1a
// hash of the user id: it needs no ring state, spreads users evenly, and
// when the shard count grows from n to n+1 only about 1/(n+1) of the users
// move, all of them to the new shard, which is the least any hash can move.
package shard

import (
	"errors"
	"fmt"
	"hash/fnv"
)

// Layout is this process's place in the cluster.
type Layout struct {
	// Shard is the shard this process serves, in [0, Shards).
	Shard int `yaml:"shard" env:"SHARD"`
	// Shards is the number of shards in the cluster; 1 for a single node.
	Shards int `yaml:"shards" env:"SHARDS"`
	// Addresses are the client-facing base URLs of the shards, indexed by
	// shard (optional; Locate returns them when set). In the environment,
	// comma-separated.
	Addresses []string `yaml:"addresses" env:"SHARD_ADDRESSES"`
}

// Single is the layout of a one-process deployment.
func Single() Layout { return Layout{Shard: 0, Shards: 1} }

// Validate reports an impossible layout.
func (l Layout) Validate() error {
	switch {
	case l.Shards < 1:
		return errors.New("shards must be at least 1")
	case l.Shard < 0 || l.Shard >= l.Shards:
		return fmt.Errorf("shard %d is outside [0, %d)", l.Shard, l.Shards)
	case len(l.Addresses) != 0 && len(l.Addresses) != l.Shards:
		return fmt.Errorf("addresses lists %d shards, want %d", len(l.Addresses), l.Shards)
	}
	return nil
}

// Of returns the shard of a user.
func (l Layout) Of(userID string) int { return Of(userID, l.Shards) }

// Owns reports whether this process's shard serves the user.
func (l Layout) Owns(userID string) bool { return l.Of(userID) == l.Shard }

// Address returns the configured address of a shard, or "".
func (l Layout) Address(shard int) string {
	if shard < 0 || shard >= len(l.Addresses) {
		return ""
	}
	return l.Addresses[shard]
}

// Of returns the shard in [0, shards) of a user; shards < 1 counts as 1.
func Of(userID string, shards int) int {
	if shards <= 1 {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(userID)) // hash.Hash never fails
	return int(jump(h.Sum64(), int32(shards)))
}

// jump is the jump consistent hash: the bucket in [0, buckets) of key.
func jump(key uint64, buckets int32) int32 {
	var b, j int64 = -1, 0
	for j < int64(buckets) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int32(b)
}
