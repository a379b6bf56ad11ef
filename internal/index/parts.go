package index

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Parts returns the Parts of a table: the table itself in the gigapi
// layout; in the cluster layout one per date in the table's registry
// (Layout.Dates), in date order. Callers that work Part by Part (see
// Layout) start here.
func (x *Index) Parts(ctx context.Context, db, table string) ([]Part, error) {
	if !x.layout.cluster {
		return []Part{{Database: db, Table: table}}, nil
	}
	dates, err := x.c.SMembers(ctx, x.layout.Dates(db, table)).Result()
	if err != nil {
		return nil, fmt.Errorf("index: dates of %s.%s: %w", db, table, err)
	}
	slices.Sort(dates)
	out := make([]Part, 0, len(dates))
	for _, d := range dates {
		if validDate(d) {
			out = append(out, Part{db, table, d})
		}
	}
	return out, nil
}

// masters is what a Redis Cluster client offers to reach every master;
// *redis.ClusterClient has it.
type masters interface {
	ForEachMaster(ctx context.Context, fn func(ctx context.Context, client *redis.Client) error) error
}

var _ masters = (*redis.ClusterClient)(nil)

// scan returns every key matching pattern, sorted and without repeats
// (SCAN may return a key twice). On a Redis Cluster it scans every master:
// SCAN sees one node's keys only.
func (x *Index) scan(ctx context.Context, pattern string) ([]string, error) {
	var mu sync.Mutex
	var keys []string
	scanOne := func(ctx context.Context, c interface {
		Scan(ctx context.Context, cursor uint64, match string, count int64) *redis.ScanCmd
	}) error {
		var cursor uint64
		for {
			page, next, err := c.Scan(ctx, cursor, pattern, scanCount).Result()
			if err != nil {
				return fmt.Errorf("index: scan %s: %w", pattern, err)
			}
			mu.Lock()
			keys = append(keys, page...)
			mu.Unlock()
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	var err error
	if m, ok := x.c.(masters); ok {
		err = m.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scanOne(ctx, c) })
	} else {
		err = scanOne(ctx, x.c)
	}
	if err != nil {
		return nil, err
	}
	slices.Sort(keys)
	return slices.Compact(keys), nil
}
