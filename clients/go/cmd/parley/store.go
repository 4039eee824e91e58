package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/parley-im/parley/clients/go/parley"
)

// store is the token file: credentials keyed by server URL, readable by the
// owner only.
type store struct {
	path string
}

type storeFile struct {
	Sessions map[string]parley.Credentials `json:"sessions"`
}

func (s *store) load() (storeFile, error) {
	f := storeFile{Sessions: map[string]parley.Credentials{}}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("read %s: %w", s.path, err)
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return f, fmt.Errorf("parse %s: %w", s.path, err)
	}
	if f.Sessions == nil {
		f.Sessions = map[string]parley.Credentials{}
	}
	return f, nil
}

// save writes f atomically (temp file and rename) with mode 0600.
func (s *store) save(f storeFile) error {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".session-*.json")
	if err != nil {
		return fmt.Errorf("write %s: %w", s.path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", s.path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", s.path, err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("write %s: %w", s.path, err)
	}
	return nil
}

func (s *store) get(server string) (parley.Credentials, bool, error) {
	f, err := s.load()
	if err != nil {
		return parley.Credentials{}, false, err
	}
	c, ok := f.Sessions[server]
	return c, ok, nil
}

func (s *store) put(server string, c parley.Credentials) error {
	f, err := s.load()
	if err != nil {
		return err
	}
	f.Sessions[server] = c
	return s.save(f)
}

func (s *store) remove(server string) error {
	f, err := s.load()
	if err != nil {
		return err
	}
	if _, ok := f.Sessions[server]; !ok {
		return nil
	}
	delete(f.Sessions, server)
	return s.save(f)
}
