//go:build unix

package natsserver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDir takes an exclusive lock on dir, so two servers never share a
// JetStream store (nats-server itself does not check). The lock goes with
// the returned file, or with the process.
func lockDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("natsserver: store directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "indexer-embedded.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("natsserver: store directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("natsserver: store directory %s is in use by another embedded nats-server: %w", dir, ErrDirInUse)
		}
		return nil, fmt.Errorf("natsserver: lock store directory %s: %w", dir, err)
	}
	return f, nil
}
