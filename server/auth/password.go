package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

const (
	// saltLen and keyLen follow RFC 9106's recommendation (128-bit salt,
	// 256-bit tag).
	saltLen = 16
	keyLen  = 32
	// minSaltLen and the key bounds are what a stored hash may use; they
	// are looser than what we generate so hashes made by other tools with
	// sane parameters still verify.
	minSaltLen = 8
	minKeyLen  = 16
	maxKeyLen  = 64
)

// errBadHash is wrapped by every PHC parse failure.
var errBadHash = errors.New("invalid argon2id hash")

// phcEncoding is the PHC string format's base64: standard alphabet, no
// padding.
var phcEncoding = base64.RawStdEncoding

// argon2Params are the cost parameters of an argon2id hash.
type argon2Params struct {
	memoryKiB   uint32
	iterations  uint32
	parallelism uint8
}

// validate returns one error per unusable parameter. argon2.IDKey panics on
// zero iterations or parallelism, so every hash we compute or parse goes
// through here first.
func (p argon2Params) validate() []error {
	var errs []error
	if p.iterations < 1 {
		errs = append(errs, fmt.Errorf("argon2 iterations must be at least 1, got %d", p.iterations))
	}
	if p.parallelism < 1 {
		errs = append(errs, fmt.Errorf("argon2 parallelism must be at least 1, got %d", p.parallelism))
	}
	// RFC 9106: memory must be at least 8 KiB per lane.
	if p.memoryKiB < 8*uint32(p.parallelism) {
		errs = append(errs, fmt.Errorf("argon2 memory must be at least 8 KiB per lane (%d KiB), got %d KiB", 8*uint32(p.parallelism), p.memoryKiB))
	}
	if p.memoryKiB > maxArgon2MemoryKiB {
		errs = append(errs, fmt.Errorf("argon2 memory must be at most %d KiB, got %d KiB", maxArgon2MemoryKiB, p.memoryKiB))
	}
	return errs
}

// hashPassword returns the argon2id hash of password with a fresh random
// salt, in PHC string format:
// $argon2id$v=19$m=<KiB>,t=<iterations>,p=<lanes>$<salt>$<hash>.
func hashPassword(password string, p argon2Params) (string, error) {
	if err := errors.Join(p.validate()...); err != nil {
		return "", err
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("read salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.iterations, p.memoryKiB, p.parallelism, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.memoryKiB, p.iterations, p.parallelism,
		phcEncoding.EncodeToString(salt), phcEncoding.EncodeToString(key)), nil
}

// verifyPassword reports whether password matches the PHC-encoded hash.
// The comparison is constant-time; the cost is that of the hash's own
// parameters. An error (wrapping errBadHash) means the hash itself is
// unusable, which is a server-side problem, not a wrong password.
func verifyPassword(password, encoded string) (bool, error) {
	p, salt, want, err := parseHash(encoded)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.iterations, p.memoryKiB, p.parallelism, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// parseHash splits a PHC argon2id string into its parameters, salt and key.
func parseHash(encoded string) (argon2Params, []byte, []byte, error) {
	var p argon2Params
	// "$argon2id$v=19$m=..,t=..,p=..$salt$hash" splits into 6 parts, the
	// first empty.
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" {
		return p, nil, nil, fmt.Errorf("%w: want 5 '$'-separated fields", errBadHash)
	}
	if parts[1] != "argon2id" {
		return p, nil, nil, fmt.Errorf("%w: algorithm %q", errBadHash, parts[1])
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, fmt.Errorf("%w: version %q", errBadHash, parts[2])
	}
	if err := p.parse(parts[3]); err != nil {
		return p, nil, nil, err
	}
	salt, err := phcEncoding.DecodeString(parts[4])
	if err != nil {
		return p, nil, nil, fmt.Errorf("%w: salt: %w", errBadHash, err)
	}
	if len(salt) < minSaltLen {
		return p, nil, nil, fmt.Errorf("%w: salt of %d bytes", errBadHash, len(salt))
	}
	key, err := phcEncoding.DecodeString(parts[5])
	if err != nil {
		return p, nil, nil, fmt.Errorf("%w: key: %w", errBadHash, err)
	}
	if len(key) < minKeyLen || len(key) > maxKeyLen {
		return p, nil, nil, fmt.Errorf("%w: key of %d bytes", errBadHash, len(key))
	}
	return p, salt, key, nil
}

// parse reads "m=<KiB>,t=<iterations>,p=<lanes>", in that order, as the
// PHC format prescribes.
func (p *argon2Params) parse(s string) error {
	fields := strings.Split(s, ",")
	if len(fields) != 3 {
		return fmt.Errorf("%w: parameters %q", errBadHash, s)
	}
	var vals [3]uint64
	for i, name := range []string{"m", "t", "p"} {
		v, ok := strings.CutPrefix(fields[i], name+"=")
		if !ok {
			return fmt.Errorf("%w: parameters %q", errBadHash, s)
		}
		bits := 32
		if name == "p" {
			bits = 8
		}
		n, err := strconv.ParseUint(v, 10, bits)
		if err != nil {
			return fmt.Errorf("%w: parameter %s: %w", errBadHash, name, err)
		}
		vals[i] = n
	}
	p.memoryKiB, p.iterations, p.parallelism = uint32(vals[0]), uint32(vals[1]), uint8(vals[2])
	if err := errors.Join(p.validate()...); err != nil {
		return fmt.Errorf("%w: %w", errBadHash, err)
	}
	return nil
}
