package main

// Redis Cluster connections (redis+cluster:// URLs), kept apart so that
// they fold easily into the shared Redis connection code.

import (
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/index"
)

// Cluster URL schemes: a comma-separated list of seed nodes, any of the
// cluster's nodes (go-redis discovers the others and follows MOVED/ASK).
const (
	clusterScheme    = "redis+cluster://"
	clusterTLSScheme = "rediss+cluster://"
)

// isClusterURL reports whether u names a Redis Cluster.
func isClusterURL(u string) bool {
	return strings.HasPrefix(u, clusterScheme) || strings.HasPrefix(u, clusterTLSScheme)
}

// clusterClient returns a Redis Cluster client for a
// redis+cluster://[user:password@]host:port[,host:port…][?option=value…]
// URL (rediss+cluster:// for TLS; the options are go-redis's cluster URL
// options). It does not connect.
func (o *redisOptions) clusterClient() (*redis.ClusterClient, error) {
	scheme, rest, _ := strings.Cut(o.url, "://")
	auth, hosts := "", rest
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		hosts = rest[:i]
	}
	query := strings.TrimPrefix(rest[len(hosts):], "/")
	if at := strings.LastIndexByte(hosts, '@'); at >= 0 {
		auth, hosts = hosts[:at+1], hosts[at+1:]
	}
	seeds := strings.Split(hosts, ",")
	bad := func(why string) error {
		return usagef("--redis-url %s: %s; use %shost:port[,host:port…]", redactURL(o.url), why, clusterScheme)
	}
	if hosts == "" || query != "" && query[0] != '?' {
		return nil, bad("no seed nodes, or a path (a cluster has no database number)")
	}
	u := strings.TrimSuffix(scheme, "+cluster") + "://" + auth + seeds[0] + "?"
	q := strings.TrimPrefix(query, "?")
	for _, s := range seeds[1:] {
		if s == "" {
			return nil, bad("an empty seed node")
		}
		q += "&addr=" + url.QueryEscape(s)
	}
	opt, err := redis.ParseClusterURL(u + strings.TrimPrefix(q, "&"))
	if err != nil {
		return nil, bad(err.Error())
	}
	if err := o.secure(&opt.Password, opt.TLSConfig, clusterTLSScheme); err != nil {
		return nil, err
	}
	opt.ClientName = "indexer"
	// Slot migrations answer MOVED, ASK and TRYAGAIN for a while: follow
	// more redirects than the default 3 before an error reaches the caller
	// (which retries it anyway).
	opt.MaxRedirects = 16
	return redis.NewClusterClient(opt), nil
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
