package testserver_test

import (
	"fmt"
	"testing"

	"github.com/streamindex/indexer/internal/testserver"
)

// TestRedisCluster starts a 3-master cluster, writes keys through a
// cluster client, moves a master's slots to another while reading, and
// finds every key where the cluster now serves it.
func TestRedisCluster(t *testing.T) {
	rc := testserver.RedisClusterFor(t, testserver.ClusterConfig{})
	c := rc.Client(t)
	ctx := t.Context()
	for i := range 300 {
		if err := c.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	slots, err := rc.SlotsOf(ctx, 0)
	if err != nil || len(slots) != 16384/3 {
		t.Fatalf("master 0 serves %d slots (%v), want %d", len(slots), err, 16384/3)
	}
	moved, err := rc.MigrateSlots(ctx, 0, 1, slots[:len(slots)/2])
	if err != nil {
		t.Fatal(err)
	}
	if moved == 0 {
		t.Fatal("no key moved")
	}
	if err := rc.WaitOK(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if v, err := c.Get(ctx, fmt.Sprintf("k%d", i)).Int(); err != nil || v != i {
			t.Fatalf("k%d = %d, %v after the migration", i, v, err)
		}
	}
	after, err := rc.SlotsOf(ctx, 0)
	if err != nil || len(after) != len(slots)-len(slots)/2 {
		t.Fatalf("master 0 serves %d slots after moving %d of %d (%v)", len(after), len(slots)/2, len(slots), err)
	}
}
