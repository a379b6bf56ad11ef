package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/index"
)

// queueOptions are the flags of GigAPI's merge, move and drop queues, for
// the commands that apply events (run, apply) and for plan.
type queueOptions struct {
	queues      string
	timeoutBase time.Duration
	merge       string
	lease       time.Duration
	publish     time.Duration // run: --publish-interval
	layers      *string       // --layers, shared with the decoder flags
	fs          *flag.FlagSet
}

// addQueueFlags registers the queue flags and makes ro's openIndex use
// them. do holds --layers when the command has decoder flags; without it
// addQueueFlags registers --layers itself. periodic adds
// --publish-interval (the worker publishes due items).
func addQueueFlags(fs *flag.FlagSet, ro *redisOptions, do *decoderOptions, periodic bool) *queueOptions {
	o := &queueOptions{fs: fs}
	fs.StringVar(&o.queues, "queues", "merge,move,drop",
		"GigAPI work `queues` to keep: a comma-separated subset of merge, move and drop, or none (GigAPI's compactor and dropper need merge and drop)")
	durationVar(fs, &o.timeoutBase, "merge-timeout-base", index.DefaultMergeTimeout, "",
		"GigAPI's merge timeout base `T`: iterations 1-4 are due T, 10T, 100T, 420T after their item starts, up to 100, 400, 4000, 4000 MiB")
	fs.StringVar(&o.merge, "merge-config", "",
		"merge iterations 1, 2, … as `timeout:max-size` pairs, e.g. 10s:100MiB,100s:400MiB (overrides --merge-timeout-base; sizes in B, KiB, MiB, GiB or bytes)")
	durationVar(fs, &o.lease, "lease", index.DefaultLease, "", "how long a leased item stays with its worker before it is delivered again")
	if periodic {
		durationVar(fs, &o.publish, "publish-interval", time.Second, "never; run 'indexer plan publish' instead",
			"publish due merge and move items into GigAPI's :idle lists this often")
	}
	if do != nil {
		o.layers = &do.layers
	} else {
		o.layers = new(string)
		fs.StringVar(o.layers, "layers", "default", layersUsage)
	}
	ro.queues = o
	return o
}

// layersUsage documents --layers, here and in the decoder flags.
const layersUsage = "comma-separated storage `layers` in order, each name[:ttl] (hot:24h,cold): events naming another layer are rejected, " +
	"and files on a layer with a TTL move to the next one after it (\"*\" accepts any layer and moves nothing)"

// layerName is the name of a --layers entry "name[:ttl]".
func layerName(entry string) string {
	name, _, _ := strings.Cut(strings.TrimSpace(entry), ":")
	return name
}

// parseLayers reads --layers: "*" is nil (any layer, no TTL).
func parseLayers(s string) ([]index.Layer, error) {
	if strings.TrimSpace(s) == "*" {
		return nil, nil
	}
	var out []index.Layer
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		name, ttl, hasTTL := strings.Cut(e, ":")
		l := index.Layer{Name: name}
		if hasTTL {
			d, err := parseSeconds(ttl)
			if err != nil {
				return nil, usagef("--layers %s: TTL %q: %v", name, ttl, err)
			}
			l.TTL = d
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, usagef("--layers is empty: name the layers, or \"*\" for any")
	}
	return out, nil
}

// parseSeconds reads a duration ("24h", "90s") or a number of seconds.
func parseSeconds(s string) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("use a duration (24h, 90s) or seconds")
	}
	return d, nil
}

// parseSize reads a size in bytes: a number, or with B, KiB, MiB, GiB, TiB.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 || n > (1<<53-1)/mult {
		return 0, fmt.Errorf("use a positive size in bytes, or with B, KiB, MiB, GiB or TiB")
	}
	return n * mult, nil
}

// config turns the flags into the index's QueueConfig.
func (o *queueOptions) config() (index.QueueConfig, error) {
	var c index.QueueConfig
	c.Disable = index.AllQueues
	for _, q := range strings.Split(o.queues, ",") {
		switch strings.TrimSpace(q) {
		case "merge":
			c.Disable &^= index.MergeQueue
		case "move":
			c.Disable &^= index.MoveQueue
		case "drop":
			c.Disable &^= index.DropQueue
		case "none":
			if strings.TrimSpace(o.queues) != "none" {
				return c, usagef("--queues %q: none goes alone", o.queues)
			}
		default:
			return c, usagef("--queues %q: use a comma-separated subset of merge, move and drop, or none", o.queues)
		}
	}
	baseSet := false
	o.fs.Visit(func(f *flag.Flag) { baseSet = baseSet || f.Name == "merge-timeout-base" })
	switch {
	case o.merge != "" && baseSet:
		return c, usagef("give --merge-config or --merge-timeout-base, not both")
	case o.merge != "":
		for i, pair := range strings.Split(o.merge, ",") {
			t, size, ok := strings.Cut(strings.TrimSpace(pair), ":")
			if !ok {
				return c, usagef("--merge-config: iteration %d: %q is not timeout:max-size (e.g. 10s:100MiB)", i+1, pair)
			}
			d, err := parseSeconds(t)
			if err != nil {
				return c, usagef("--merge-config: iteration %d: timeout %q: %v", i+1, t, err)
			}
			n, err := parseSize(size)
			if err != nil {
				return c, usagef("--merge-config: iteration %d: size %q: %v", i+1, size, err)
			}
			c.Merge = append(c.Merge, index.MergeLevel{Timeout: d, MaxSize: n})
		}
	default:
		c.Merge = index.DefaultMergeLevels(o.timeoutBase)
	}
	var err error
	if c.Layers, err = parseLayers(*o.layers); err != nil {
		return c, err
	}
	c.Lease = o.lease
	if _, err := index.New(nil, index.Config{Queues: c}); err != nil {
		return c, usagef("%v", err)
	}
	return c, nil
}

// startPublisher publishes due merge and move items every
// --publish-interval (the first after a random part of it), until ctx is
// done; the returned function stops it and waits. Many workers may
// publish at once: an item is published once.
func startPublisher(ctx context.Context, o *queueOptions, x *index.Index, log *slog.Logger) (stop func()) {
	if o.publish <= 0 || o.queues == "none" {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTimer(time.Duration(rand.Int64N(int64(o.publish))) + time.Millisecond)
		defer t.Stop()
		failing := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			n, err := x.Publish(ctx)
			switch {
			case err != nil && ctx.Err() == nil && consumer.Classify(err) == consumer.Fatal:
				// A refusal (an ACL without a command queue_publish
				// calls) can stop the script after some of its writes;
				// retrying would push the same items again.
				log.Error("publishing due queue items was refused; this worker stops publishing until it restarts: grant its Redis user the commands of the README's worker ACL (Security)",
					"err", err)
				return
			case err != nil && ctx.Err() == nil:
				if !failing {
					log.Warn("publishing due queue items failed; retrying every --publish-interval", "err", err)
				}
				failing = true
			case err == nil:
				if failing {
					log.Info("publishing due queue items works again")
				}
				failing = false
				if n > 0 {
					log.Debug("published due queue items", "items", n)
				}
			}
			t.Reset(o.publish)
		}
	}()
	return func() { cancel(); wg.Wait() }
}
