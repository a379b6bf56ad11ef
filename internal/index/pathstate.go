package index

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
)

// PathState is a path's state in the index's per-path state machine.
type PathState int

// The states of a path.
const (
	PathAbsent     PathState = iota // never indexed, or its tombstone was collected
	PathLive                        // it has an entry
	PathTombstoned                  // deleted: a create of it is ignored
)

// State returns the state of a valid path, as patch_index reads it: an
// entry makes it live whatever else; else a tombstone makes it
// tombstoned.
func (x *Index) State(ctx context.Context, db, table, path string) (PathState, error) {
	f := event.File{Path: path}
	if err := checkPath(path); err != nil {
		return PathAbsent, err
	}
	n, err := x.c.HExists(ctx, x.layout.Files(db, table, f.Date()), path).Result()
	if err != nil {
		return PathAbsent, fmt.Errorf("index: state of %s: %w", path, err)
	}
	if n {
		return PathLive, nil
	}
	err = x.c.ZScore(ctx, x.layout.Tombstones(x.layout.Part(db, table, f.Date())), path).Err()
	switch {
	case errors.Is(err, redis.Nil):
		return PathAbsent, nil
	case err != nil:
		return PathAbsent, fmt.Errorf("index: state of %s: %w", path, err)
	}
	return PathTombstoned, nil
}
