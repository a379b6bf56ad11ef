package lua

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed lock_release.lua
	lockReleaseSrc string

	lockRelease = redis.NewScript(lockReleaseSrc)
)

// ReleaseLock deletes the lock key if, and only if, it still holds token
// (compare and delete, atomically), so only the holder releases a lock: one
// that expired and was taken by another holder meanwhile is left alone. It
// reports whether it released the lock.
//
// KEYS: key. ARGV: token.
func ReleaseLock(ctx context.Context, c redis.Scripter, key, token string) (bool, error) {
	n, err := lockRelease.Run(ctx, c, []string{key}, token).Int()
	if err != nil {
		return false, fmt.Errorf("lock_release %s: %w", key, err)
	}
	return n == 1, nil
}
