package main

// The flag checks of Redis Cluster URLs; internal/redisconn makes the
// cluster client.

import (
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/redisconn"
)

// isClusterURL reports whether u names a Redis Cluster
// (redis+cluster://, rediss+cluster://; see internal/redisconn).
func isClusterURL(u string) bool {
	t, err := redisconn.Parse(u)
	return err == nil && t.Kind == redisconn.Cluster
}

// checkClusterLayout refuses the gigapi layout on a Redis Cluster URL:
// GigAPI's key names span hash slots.
func (o *redisOptions) checkClusterLayout(l index.Layout) error {
	if isClusterURL(o.url) && !l.Cluster() {
		return usagef("--redis-url names a Redis Cluster, where the %s layout cannot work (GigAPI's keys span hash slots): "+
			"use --layout %s (GigAPI's own readers need the %s layout on a single shard)", index.LayoutGigAPI, index.LayoutCluster, index.LayoutGigAPI)
	}
	return nil
}

// checkStreamSlot refuses, on a Redis Cluster, a stream and dead-letter
// stream in different hash slots: dead-lettering moves entries between
// them in one script.
func checkStreamSlot(source, redisURL, stream, deadLetters string) error {
	if source != sourceRedis || deadLetters == "" || !isClusterURL(redisURL) || index.HashTag(stream) == index.HashTag(deadLetters) {
		return nil
	}
	return usagef("on a Redis Cluster the stream %q and the dead-letter stream %q must share a hash tag: "+
		"use for example --stream '{idx:events}' --dead-letter-stream '{idx:events}:dlq'", stream, deadLetters)
}
