package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// peersFile is where a node remembers its successors, so that after a
// restart it can rejoin its ring without --join.
const peersFile = "peers.json"

type persistedPeers struct {
	Peers []string `json:"peers"`
}

// loadPeers reads the peers remembered from the last run; a missing file is
// no peers.
func loadPeers(dir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, peersFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read peers: %w", err)
	}
	var p persistedPeers
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("read peers %s: %w", filepath.Join(dir, peersFile), err)
	}
	return p.Peers, nil
}

// savePeers replaces peers.json atomically: a crash leaves the old file or
// the new one, never a torn one.
func savePeers(dir string, peers []string) error {
	b, err := json.Marshal(persistedPeers{Peers: peers})
	if err != nil {
		return fmt.Errorf("encode peers: %w", err)
	}
	tmp, err := os.CreateTemp(dir, peersFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("save peers: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save peers: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save peers: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save peers: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, peersFile)); err != nil {
		return fmt.Errorf("save peers: %w", err)
	}
	return nil
}
