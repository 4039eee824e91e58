package imagebuild

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// elfMachines maps the GOARCH values an image may be built for to the ELF
// machine of their binaries. 32-bit arm is left out: its images need a
// platform variant (v6, v7) that a binary does not record.
var elfMachines = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"ppc64le": elf.EM_PPC64,
	"riscv64": elf.EM_RISCV,
	"s390x":   elf.EM_S390,
}

// checkStatic reports whether path is a statically linked Linux executable
// for arch. A scratch image has no dynamic loader and no libc: a binary
// built with cgo would fail there with a baffling "no such file or
// directory", so refuse it at build time with the fix instead.
func checkStatic(path, arch string) error {
	want, ok := elfMachines[arch]
	if !ok {
		return fmt.Errorf("unsupported architecture %q (one of %s)", arch, strings.Join(supportedArchs(), ", "))
	}
	f, err := elf.Open(path)
	if err != nil {
		var formatErr *elf.FormatError
		if errors.As(err, &formatErr) {
			return fmt.Errorf("%s: not a Linux executable (%w)", path, err)
		}
		return fmt.Errorf("binary: %w", err)
	}
	defer f.Close()
	if f.Machine != want {
		return fmt.Errorf("%s: built for %s, not %s: build it with GOARCH=%s", path, machineArch(f.Machine), arch, arch)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("%s: not an executable (%s)", path, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		interp, err := io.ReadAll(p.Open())
		if err != nil {
			return fmt.Errorf("%s: read its interpreter: %w", path, err)
		}
		return fmt.Errorf("%s: dynamically linked (needs %s, which scratch lacks): build it with CGO_ENABLED=0",
			path, strings.TrimRight(string(interp), "\x00"))
	}
	return nil
}

func machineArch(m elf.Machine) string {
	for arch, em := range elfMachines {
		if em == m {
			return arch
		}
	}
	return m.String()
}

func supportedArchs() []string {
	return slices.Sorted(maps.Keys(elfMachines))
}
