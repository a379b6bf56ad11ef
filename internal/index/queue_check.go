package index

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
)

// checkQueues reports the merge and move items waiting in a table's :idle
// lists that GigAPI's compactor or mover could not do right: an item that
// is not GigAPI's JSON, that lists a path not live, a path that another
// item lists too, or whose size is not the sum of its paths' sizes; and
// items without time_s.
func (x *Index) checkQueues(ctx context.Context, db, table string, rep *CheckReport) error {
	var keys []string
	for _, pattern := range x.layout.QueuePatterns(db, table) {
		page, err := x.scan(ctx, pattern)
		if err != nil {
			return fmt.Errorf("index: check: %w", err)
		}
		for _, k := range page {
			if strings.HasSuffix(k, ":idle") && !strings.HasPrefix(k, "drop:") {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	listed := make(map[string]string) // path -> id of the merge item listing it
	for _, key := range keys {
		items, err := x.c.LRange(ctx, key, 0, -1).Result()
		if err != nil {
			return fmt.Errorf("index: check %s: %w", key, err)
		}
		for _, raw := range items {
			if err := x.checkItem(ctx, db, table, key, raw, listed, rep); err != nil {
				return err
			}
		}
	}
	return nil
}

// queueItem is a merge or move item as GigAPI's workers read it.
type queueItem struct {
	ID       string   `json:"id"`
	TimeS    *int64   `json:"time_s"`
	Paths    []string `json:"paths"`
	Size     *int64   `json:"size"`
	PathFrom string   `json:"path_from"`
}

func (x *Index) checkItem(ctx context.Context, db, table, key, raw string, listed map[string]string, rep *CheckReport) error {
	var it queueItem
	bad := func(what string) { rep.Drifts = append(rep.Drifts, Drift{Key: key, Field: it.ID, What: what}) }
	if err := json.Unmarshal([]byte(raw), &it); err != nil || it.ID == "" {
		rep.Drifts = append(rep.Drifts, Drift{Key: key, What: fmt.Sprintf("item %.80q is not GigAPI's item JSON", raw)})
		return nil
	}
	if it.TimeS == nil {
		bad("item has no time_s; GigAPI's lease script would drop it")
	}
	merge := strings.HasPrefix(key, "merge:")
	paths := it.Paths
	if !merge {
		paths = []string{it.PathFrom}
	}
	if merge && (it.Size == nil || len(paths) == 0) {
		bad("merge item without paths or size")
		return nil
	}
	var sum int64
	for _, p := range paths {
		if checkPath(p) != nil {
			bad("lists " + strconv.Quote(p) + ", not a valid file path")
			continue
		}
		if other, dup := listed[p]; dup && merge {
			bad("lists " + p + ", which item " + other + " lists too")
		}
		if merge {
			listed[p] = it.ID
		}
		f := event.File{Path: p}
		v, err := x.c.HGet(ctx, x.layout.Files(db, table, f.Date()), p).Result()
		if errors.Is(err, redis.Nil) {
			bad("lists " + p + ", which is not live")
			continue
		}
		if err != nil {
			return fmt.Errorf("index: check %s: %w", key, err)
		}
		e, err := ParseEntry(v)
		if err == nil {
			sum += e.SizeBytes
		}
	}
	if merge && *it.Size != sum {
		bad(fmt.Sprintf("size %d, its paths' sizes sum to %d", *it.Size, sum))
	}
	return nil
}
