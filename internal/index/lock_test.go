package index_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/index"
)

func newLock(t *testing.T, c *redis.Client, ttl time.Duration) *index.Lock {
	t.Helper()
	l, err := index.NewLock(c, "idx:lock:test", ttl)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestLockOneHolder: a held lock cannot be taken, and only its holder
// releases it.
func TestLockOneHolder(t *testing.T) {
	_, c := newIndex(t, index.Config{})
	ctx := context.Background()
	a, b := newLock(t, c, time.Minute), newLock(t, c, time.Minute)
	if ok, err := a.TryAcquire(ctx); !ok || err != nil {
		t.Fatalf("a: %v %v, want the lock", ok, err)
	}
	if ok, err := b.TryAcquire(ctx); ok || err != nil {
		t.Fatalf("b: %v %v, want refused while a holds it", ok, err)
	}
	if ok, _ := b.Release(ctx); ok {
		t.Fatal("b released a lock it does not hold")
	}
	if ttl := c.PTTL(ctx, "idx:lock:test").Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("lock TTL %v, want (0, 1m]", ttl)
	}
	if ok, err := a.Release(ctx); !ok || err != nil {
		t.Fatalf("a release: %v %v", ok, err)
	}
	if ok, _ := b.TryAcquire(ctx); !ok {
		t.Fatal("b could not take the released lock")
	}
}

// TestLockExpiredNotReleasedByOldHolder: a holder whose lease ran out does
// not release the lock another holder took since.
func TestLockExpiredNotReleasedByOldHolder(t *testing.T) {
	_, c := newIndex(t, index.Config{})
	ctx := context.Background()
	a, b := newLock(t, c, 50*time.Millisecond), newLock(t, c, time.Minute)
	if ok, _ := a.TryAcquire(ctx); !ok {
		t.Fatal("a: no lock")
	}
	time.Sleep(80 * time.Millisecond)
	if ok, _ := b.TryAcquire(ctx); !ok {
		t.Fatal("b could not take the expired lock")
	}
	if ok, _ := a.Release(ctx); ok {
		t.Fatal("a released b's lock")
	}
	if c.Exists(ctx, "idx:lock:test").Val() != 1 {
		t.Fatal("b's lock is gone")
	}
	if _, err := index.NewLock(c, "k", 0); err == nil {
		t.Fatal("a zero TTL was accepted")
	}
}

// TestGCBounds: GC removes exactly the tombstones older than both the
// minimum age and the source's oldest entry (less the skew).
func TestGCBounds(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	x, c := newIndex(t, index.Config{})
	ctx := context.Background()
	key := x.Layout().Tombstones(index.Part{Database: "db", Table: "t"})
	ages := map[string]time.Duration{"a": 3 * time.Hour, "b": 90 * time.Minute, "c": 62 * time.Minute, "d": 30 * time.Minute, "e": 0}
	reset := func() {
		for name, age := range ages {
			f := file(1, name)
			apply(t, x, deleted(f))
			c.ZAdd(ctx, key, redis.Z{Score: float64(now.Add(-age).UnixMilli()), Member: f.Path})
		}
	}
	left := func() map[string]bool {
		out := map[string]bool{}
		for name := range ages {
			if c.ZScore(ctx, key, file(1, name).Path).Err() == nil {
				out[name] = true
			}
		}
		return out
	}
	oldest := func(t time.Time, ok bool) func(context.Context) (time.Time, bool, error) {
		return func(context.Context) (time.Time, bool, error) { return t, ok, nil }
	}
	cases := []struct {
		name   string
		cfg    index.GCConfig
		remove string // names removed
	}{
		// The oldest entry is an hour old: minus 5 min skew, only a and b.
		{"stream bound", index.GCConfig{MinAge: -1, Oldest: oldest(now.Add(-time.Hour), true)}, "ab"},
		// The minimum age is the tighter bound.
		{"min age bound", index.GCConfig{MinAge: 2 * time.Hour, Oldest: oldest(now.Add(-time.Hour), true)}, "a"},
		// An empty stream leaves the minimum age.
		{"empty stream", index.GCConfig{MinAge: 20 * time.Minute, Oldest: oldest(time.Time{}, false)}, "abcd"},
		// The default minimum age (7 days) keeps everything here.
		{"default min age", index.GCConfig{Oldest: oldest(now, true)}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reset()
			tc.cfg.Now = func() time.Time { return now }
			dry := tc.cfg
			dry.DryRun = true
			rep, err := x.GC(ctx, newLock(t, c, time.Minute), dry)
			if err != nil || rep.Removed != len(tc.remove) || len(left()) != len(ages) {
				t.Fatalf("dry run: %+v, %v; %d left; want %d counted and nothing removed", rep, err, len(left()), len(tc.remove))
			}
			rep, err = x.GC(ctx, newLock(t, c, time.Minute), tc.cfg)
			if err != nil || rep.Removed != len(tc.remove) || rep.Busy {
				t.Fatalf("gc: %+v, %v; want %d removed", rep, err, len(tc.remove))
			}
			got := left()
			for name := range ages {
				removed := !got[name]
				if want := containsRune(tc.remove, name); removed != want {
					t.Errorf("tombstone %s (%v old): removed %v, want %v (before %v)", name, ages[name], removed, want, now.Sub(rep.Before))
				}
			}
		})
	}
	// While another process holds the lock, GC does nothing.
	other := newLock(t, c, time.Minute)
	other.TryAcquire(ctx)
	reset()
	rep, err := x.GC(ctx, newLock(t, c, time.Minute), index.GCConfig{MinAge: -1, Oldest: oldest(now, true), Now: func() time.Time { return now }})
	if err != nil || !rep.Busy || rep.Removed != 0 || len(left()) != len(ages) {
		t.Fatalf("gc under another's lock: %+v, %v; want Busy and nothing removed", rep, err)
	}
}

func containsRune(s, r string) bool {
	for _, c := range s {
		if string(c) == r {
			return true
		}
	}
	return false
}
