package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/streamindex/indexer/internal/index"
)

// TestClusterURL parses redis+cluster:// URLs into cluster clients and
// refuses bad ones without showing the password.
func TestClusterURL(t *testing.T) {
	o := &redisOptions{url: "redis+cluster://app:s3cret@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002?dial_timeout=3s"}
	c, err := o.clusterClient()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opt := c.Options()
	if want := []string{"10.0.0.1:7000", "10.0.0.2:7001", "[::1]:7002"}; !reflect.DeepEqual(opt.Addrs, want) ||
		opt.Username != "app" || opt.Password != "s3cret" || opt.DialTimeout.Seconds() != 3 || opt.TLSConfig != nil {
		t.Fatalf("options: %+v", opt)
	}
	if redisHost(o.url) != "10.0.0.1:7000,10.0.0.2:7001,[::1]:7002" {
		t.Fatalf("redisHost: %q", redisHost(o.url))
	}
	tlsOpt := &redisOptions{url: "rediss+cluster://h1:7000,h2:7000"}
	tc, err := tlsOpt.clusterClient()
	if err != nil || tc.Options().TLSConfig == nil {
		t.Fatalf("rediss+cluster://: TLS %v, %v", tc.Options().TLSConfig, err)
	}
	tc.Close()
	for _, bad := range []string{"redis+cluster://app:s3cret@", "redis+cluster://app:s3cret@h1:1/0", "redis+cluster://app:s3cret@h1:1,,h2:2",
		"redis+cluster://app:s3cret@h1:1?bogus=1"} {
		o := &redisOptions{url: bad}
		_, err := o.clusterClient()
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
