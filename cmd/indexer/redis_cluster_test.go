package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/index"
)

// TestClusterURL parses redis+cluster:// URLs into cluster clients and
// refuses bad ones without showing the password.
func TestClusterURL(t *testing.T) {
	o := &redisOptions{url: "redis+cluster://app:s3cret@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002"}
	c, err := o.client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cc, ok := c.Client.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("a %T, want a cluster client", c.Client)
	}
	opt := cc.Options()
	if want := []string{"10.0.0.1:7000", "10.0.0.2:7001", "[::1]:7002"}; !reflect.DeepEqual(opt.Addrs, want) ||
		opt.Username != "app" || opt.Password != "s3cret" || opt.MaxRedirects != 16 || opt.TLSConfig != nil {
		t.Fatalf("options: %+v", opt)
	}
	tlsOpt := &redisOptions{url: "rediss+cluster://h1:7000,h2:7000"}
	tc, err := tlsOpt.client()
	if err != nil || tc.Client.(*redis.ClusterClient).Options().TLSConfig == nil {
		t.Fatalf("rediss+cluster://: %v", err)
	}
	tc.Close()
	for _, bad := range []string{"redis+cluster://app:s3cret@", "redis+cluster://app:s3cret@h1:1/1", "redis+cluster://app:s3cret@h1:1,,h2:2",
		"redis+cluster://app:s3cret@h1:1?bogus=1"} {
		o := &redisOptions{url: bad}
		_, err := o.client()
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: %v, want an error without the password", bad, err)
		}
	}
	l, _ := index.NewLayout("")
	if err := o.checkClusterLayout(l); err == nil || !strings.Contains(err.Error(), "--layout cluster") {
		t.Errorf("the gigapi layout on a cluster URL: %v", err)
	}
	if err := checkStreamSlot(sourceRedis, o.url, "idx:events", "idx:events:dlq"); err == nil {
		t.Error("a stream and dead letters in two slots passed")
	}
	if err := checkStreamSlot(sourceRedis, o.url, "{idx:events}", "{idx:events}:dlq"); err != nil {
		t.Error(err)
	}
}
