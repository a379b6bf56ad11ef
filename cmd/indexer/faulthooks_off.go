//go:build !failpoints

package main

import (
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/index"
)

// faultHooks returns the worker's source and applier unchanged: the
// negative controls of the fault-injection suite exist only in binaries
// built with the failpoints tag (faulthooks_on.go).
func faultHooks(src consumer.Source, x *index.Index, _ redis.UniversalClient, _ *slog.Logger) (consumer.Source, consumer.Applier) {
	return src, x
}
