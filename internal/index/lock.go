package index

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/lua"
)

// LockClient is the part of a Redis client a Lock uses. *redis.Client
// satisfies it.
type LockClient interface {
	redis.Scripter
	SetNX(ctx context.Context, key string, value any, expiration time.Duration) *redis.BoolCmd
}

var _ LockClient = (*redis.Client)(nil)

// Lock is a lease on one key (from Layout.Lock) that at most one holder has
// at a time, across processes: TryAcquire sets the key to a random token if
// it is absent (SET NX PX), and Release deletes it only if it still holds
// that token (a compare-and-delete script), so a holder never releases a
// lease that expired and was taken by another. A holder that dies without
// releasing loses the lease after its TTL.
//
// A Lock belongs to one goroutine.
type Lock struct {
	c     LockClient
	key   string
	ttl   time.Duration
	now   func() time.Time
	token string    // "" while not held
	until time.Time // when the lease ends, by this process's clock
}

// NewLock returns a Lock on key whose leases last ttl (at least 1 ms). It
// does not contact Redis.
func NewLock(c LockClient, key string, ttl time.Duration) (*Lock, error) {
	if ttl < time.Millisecond {
		return nil, fmt.Errorf("index: lock %s: TTL %v must be at least 1ms", key, ttl)
	}
	return &Lock{c: c, key: key, ttl: ttl, now: time.Now}, nil
}

// Key returns the lock's key.
func (l *Lock) Key() string { return l.key }

// TryAcquire takes the lease if nobody holds it, and reports whether it
// did. It does not wait. Taking a lease this Lock holds already renews
// nothing and reports false.
func (l *Lock) TryAcquire(ctx context.Context) (bool, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return false, err
	}
	token := hex.EncodeToString(b[:])
	start := l.now()
	ok, err := l.c.SetNX(ctx, l.key, token, l.ttl).Result()
	if err != nil {
		return false, fmt.Errorf("index: lock %s: %w", l.key, err)
	}
	if ok {
		l.token, l.until = token, start.Add(l.ttl)
	}
	return ok, nil
}

// Until returns when the current lease ends (measured from before it was
// requested, so never later than Redis's expiry); zero if not held.
func (l *Lock) Until() time.Time {
	if l.token == "" {
		return time.Time{}
	}
	return l.until
}

// Release ends the lease if this Lock still holds it, and reports whether
// it did (false if it had expired, whoever holds the key now). Releasing a
// Lock not held does nothing.
func (l *Lock) Release(ctx context.Context) (bool, error) {
	if l.token == "" {
		return false, nil
	}
	token := l.token
	l.token, l.until = "", time.Time{}
	ok, err := lua.ReleaseLock(ctx, l.c, l.key, token)
	if err != nil {
		return false, fmt.Errorf("index: %w", err)
	}
	return ok, nil
}
