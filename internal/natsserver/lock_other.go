//go:build !unix

package natsserver

import "os"

// lockDir does nothing where flock is missing: the caller must not start
// two servers on one store directory.
func lockDir(dir string) (*os.File, error) {
	return nil, os.MkdirAll(dir, 0o750)
}
