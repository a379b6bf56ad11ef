package integration

// The checker of the fault-injection suite, Jepsen style: it compares the
// final index with the model computed from the events the test published
// (synth.Model over the distinct events, delete wins), reading Redis
// directly (SCAN and HGETALL of the files: hashes, the tombstone sets), not
// through the indexer's own read path, and classifies every difference:
//
//   lost        an effect the model has is missing: a live file not
//               indexed, or a deleted path without its tombstone
//               (acknowledged events whose effect is gone);
//   unexpected  the index has what the model has not: a file indexed that
//               the model does not have live (never created, or deleted
//               and resurrected), a tombstone the model lacks;
//   mismatches  an indexed file whose entry differs from the model's;
//   drift       a counter that differs from a recount of the entries
//               (index.Check: folders, statistics, queues, paths both
//               live and tombstoned) — a file counted twice, or a batch
//               applied in part, shows here;
//               Scenarios may also probe while the workers run
//               (ackedNotApplied); what a probe finds is added here;
//   unknown     messages still unread or unacknowledged after the drain:
//               their outcome is unknown, so the paths they touch are left
//               out of the counts above (and the test fails).
//
// Dead letters are compared with the poison the test published, as
// multisets of payloads.
//
// The summary line (verdict.String) is printed with fmt.Println, so it
// shows in 'go test -v' output without t.Log's file:line prefix, and in the
// output of a failing package; with INDEXER_FAULT_SUMMARY=<file> it is also
// appended to that file ('make test' and 'make soak' print it at the end).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/consumer/jetstream"
	"github.com/streamindex/indexer/internal/consumer/redisstream"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/synth"
)

// verdict is what the checker found.
type verdict struct {
	Scenario                            string
	Events                              int
	Lost, Unexpected, Mismatches, Drift int
	DLQGot, DLQWant, DLQStray           int // dead letters, poison published, dead letters not matching the poison
	Faults                              int64
	Unknown                             int // messages unread or unacknowledged
	Drain                               time.Duration
	// Expected names the faults a negative control or an intermediate
	// check is meant to find (e.g. "lost"); "" for a scenario that must
	// come out clean.
	Expected string
	examples []string
}

// String is the summary line. unknown= is appended only when not 0 (the
// test fails then).
func (v verdict) String() string {
	s := fmt.Sprintf("scenario=%s events=%d lost=%d unexpected=%d mismatches=%d drift=%d dlq=%d/%d faults=%d drain=%s",
		v.Scenario, v.Events, v.Lost, v.Unexpected, v.Mismatches, v.Drift, v.DLQGot, v.DLQWant, v.Faults, fmtDur(v.Drain))
	if v.Unknown != 0 {
		s += fmt.Sprintf(" unknown=%d", v.Unknown)
	}
	if v.DLQStray != 0 {
		s += fmt.Sprintf(" dlq_stray=%d", v.DLQStray)
	}
	if v.Expected != "" {
		s += " expected=" + v.Expected
	}
	return s
}

func fmtDur(d time.Duration) string {
	if d >= 10*time.Second {
		return d.Round(time.Second).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

// clean reports whether the checker found nothing wrong.
func (v verdict) clean() bool {
	return v.Lost == 0 && v.Unexpected == 0 && v.Mismatches == 0 && v.Drift == 0 && v.Unknown == 0 &&
		v.DLQGot == v.DLQWant && v.DLQStray == 0
}

func (v verdict) assertClean(t *testing.T) {
	t.Helper()
	if !v.clean() {
		t.Errorf("the checker found faults: %s\nfirst differences:\n  %s", v, strings.Join(v.examples, "\n  "))
	}
}

var summaryMu sync.Mutex

// print prints the summary line (see the package comment above).
func (v verdict) print() {
	line := v.String()
	summaryMu.Lock()
	defer summaryMu.Unlock()
	fmt.Println(line)
	if p := os.Getenv("INDEXER_FAULT_SUMMARY"); p != "" {
		if fh, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintln(fh, line)
			fh.Close()
		}
	}
}

// check runs the checker on the environment's model and prints the
// summary line; expected names the faults the scenario is meant to show
// ("" when it must come out clean; the caller asserts either way).
func (f *fenv) check(scenario, expected string) verdict {
	f.t.Helper()
	f.mu.Lock()
	model, sent, poison := f.model, f.sent, slices.Clone(f.poison)
	f.mu.Unlock()
	v := verdict{Scenario: scenario, Events: sent, Faults: f.faults.Load(), Drain: f.drainFor, Expected: expected}
	if f.rproxy != nil {
		v.Faults += f.rproxy.Stats().Faults()
	}
	if f.nproxy != nil {
		v.Faults += f.nproxy.Stats().Faults()
	}
	unknownPaths := f.unknown(&v)
	checkModel(f.t, f.rdb, gigapiLayout, model, unknownPaths, &v)
	if n := f.midLost.Load(); n > 0 {
		v.Lost += int(n)
		v.examples = append(v.examples, fmt.Sprintf("%d acknowledged events were not in effect while the workers ran", n))
	}
	f.mu.Lock()
	if len(f.kinds) > 0 {
		kinds := fmt.Sprint(f.kinds)
		if f.rproxy != nil {
			st := f.rproxy.Stats()
			kinds += fmt.Sprintf(" redis-proxy:%d-resets,%d-lost-replies", st.Resets, st.DroppedReplies)
		}
		if f.nproxy != nil {
			st := f.nproxy.Stats()
			kinds += fmt.Sprintf(" nats-proxy:%d-resets,%d-lost-replies", st.Resets, st.DroppedReplies)
		}
		f.t.Logf("%s faults: %s", scenario, kinds)
	}
	f.mu.Unlock()
	f.checkDeadLetters(poison, &v)
	v.print()
	return v
}

// unknown counts the messages the group has not read or not acknowledged,
// and returns the paths their events touch.
func (f *fenv) unknown(v *verdict) map[string]bool {
	ctx := f.t.Context()
	paths := map[string]bool{}
	add := func(data []byte, ct string) {
		format, err := event.ParseFormat(ct)
		if err != nil {
			return
		}
		e, err := event.Decode(format, data)
		if err != nil {
			return
		}
		e.Files(func(fl *event.File, _ bool) { paths[e.Database+":"+e.Table+"\x00"+fl.Path] = true })
	}
	if f.source == "nats" {
		info, err := f.natsConsumer(ctx)
		if err != nil {
			v.Unknown = -1
			v.examples = append(v.examples, "consumer info: "+err.Error())
			return paths
		}
		v.Unknown = int(info.NumPending) + info.NumAckPending
		if v.Unknown == 0 {
			return paths
		}
		s, err := f.js.Stream(ctx, "IDX_EVENTS")
		if err != nil {
			return paths
		}
		last := s.CachedInfo().State.LastSeq
		for seq := info.AckFloor.Stream + 1; seq <= last; seq++ {
			if m, err := s.GetMsg(ctx, seq); err == nil {
				add(m.Data, m.Header.Get("Content-Type"))
			}
		}
		return paths
	}
	var last string
	for _, g := range f.rdb.XInfoGroups(ctx, stream).Val() {
		if g.Name == group {
			last = g.LastDeliveredID
		}
	}
	if last == "" {
		v.Unknown = -1
		v.examples = append(v.examples, "the group is missing")
		return paths
	}
	var msgs []redis.XMessage
	for _, p := range f.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: group, Start: "-", End: "+", Count: 1 << 20}).Val() {
		msgs = append(msgs, f.rdb.XRange(ctx, stream, p.ID, p.ID).Val()...)
		v.Unknown++
	}
	after := f.rdb.XRange(ctx, stream, "("+last, "+").Val()
	v.Unknown += len(after)
	for _, m := range append(msgs, after...) {
		d, _ := m.Values["data"].(string)
		ct, _ := m.Values["ct"].(string)
		add([]byte(d), ct)
	}
	return paths
}

// gigapiLayout is the default layout, with the default prefix.
var gigapiLayout, _ = index.NewLayout("")

// checkModel compares the index in c, of layout l, with the model and adds
// what it finds to v; paths in skip ("<db>:<table>\x00<path>") are not
// counted. It finds the files: hashes and the tombstone sets by SCAN (of
// every master of a cluster), not through the registry.
func checkModel(t *testing.T, c redis.UniversalClient, l index.Layout, m *synth.Model, skip map[string]bool, v *verdict) {
	t.Helper()
	ctx := context.Background()
	example := func(format string, a ...any) {
		if len(v.examples) < 10 {
			v.examples = append(v.examples, fmt.Sprintf(format, a...))
		}
	}
	tables := map[string]bool{}
	for tb := range m.Live {
		tables[tb] = true
	}
	for tb := range m.Tombstoned {
		tables[tb] = true
	}
	for _, tb := range c.SMembers(ctx, l.Tables()).Val() {
		tables[tb] = true
	}
	for tb := range tables {
		db, table, _ := strings.Cut(tb, ":")
		live, tomb := m.Live[tb], m.Tombstoned[tb]
		got := indexedFiles(t, c, l, db, table)
		tombs := map[string]bool{}
		// The tombstone sets: the table's own (gigapi layout), or those of
		// its dates found by SCAN (cluster layout: one per date).
		tkeys := []string{l.Tombstones(l.Part(db, table, ""))}
		if l.Cluster() {
			tkeys = scanAll(t, c, l.Prefix()+"tomb:{"+tb+":*")
		}
		for _, k := range tkeys {
			for _, p := range c.ZRange(ctx, k, 0, -1).Val() {
				tombs[p] = true
			}
		}
		sk := func(p string) bool { return skip[tb+"\x00"+p] }
		for p, f := range live {
			en, ok := got[p]
			switch {
			case sk(p):
			case !ok:
				v.Lost++
				example("lost: %s %s is live in the model, not indexed", tb, p)
			case en.SizeBytes != f.SizeBytes || en.RowCount != f.RowCount || en.MinTime != f.MinTime ||
				en.MaxTime != f.MaxTime || en.ChunkTime != f.ChunkTime || en.Layer != f.Layer || en.WriterID != f.WriterID ||
				!bytes.Equal(en.Min, f.Min.AppendJSON(nil)) || !bytes.Equal(en.Max, f.Max.AppendJSON(nil)):
				v.Mismatches++
				example("mismatch: %s %s: indexed %+v", tb, p, en)
			}
		}
		for p := range tomb {
			if sk(p) {
				continue
			}
			if !tombs[p] {
				v.Lost++
				example("lost: %s %s is deleted in the model and has no tombstone", tb, p)
			}
		}
		for p := range got {
			if _, ok := live[p]; !ok && !sk(p) {
				v.Unexpected++
				if tomb[p] {
					example("unexpected: %s %s is deleted in the model and indexed (resurrected)", tb, p)
				} else {
					example("unexpected: %s %s was never created", tb, p)
				}
			}
		}
		for p := range tombs {
			if !tomb[p] && !sk(p) {
				v.Unexpected++
				example("unexpected: %s %s is tombstoned and was never deleted", tb, p)
			}
		}
	}
	x, err := index.New(c, index.Config{Layout: &l})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := x.Check(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	v.Drift = len(rep.Drifts)
	for _, d := range rep.Drifts {
		example("drift: %s", d)
	}
}

// scanAll returns the keys matching pattern, on every master of a
// cluster.
func scanAll(t *testing.T, c redis.UniversalClient, pattern string) []string {
	t.Helper()
	var mu sync.Mutex
	var out []string
	scan := func(ctx context.Context, n redis.Cmdable) error {
		iter := n.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			out = append(out, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	if cc, ok := c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(context.Background(), func(ctx context.Context, n *redis.Client) error { return scan(ctx, n) })
	} else {
		err = scan(context.Background(), c)
	}
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// indexedFiles reads every entry of a table from its files: hashes.
func indexedFiles(t *testing.T, c redis.UniversalClient, l index.Layout, db, table string) map[string]index.Entry {
	t.Helper()
	ctx := context.Background()
	out := map[string]index.Entry{}
	for _, k := range scanAll(t, c, l.FilesPattern(db, table)) {
		if c.Type(ctx, k).Val() != "hash" {
			continue
		}
		for p, raw := range c.HGetAll(ctx, k).Val() {
			en, err := index.ParseEntry(raw)
			if err != nil {
				en = index.Entry{Path: p, SizeBytes: -1} // counted as a mismatch
			}
			out[p] = en
		}
	}
	return out
}

// checkDeadLetters compares the dead letters with the poison published.
func (f *fenv) checkDeadLetters(poison [][]byte, v *verdict) {
	ctx := f.t.Context()
	v.DLQWant = len(poison)
	var dead []consumer.StoredDeadLetter
	var err error
	if f.source == "nats" {
		dead, err = jetstream.DeadLetters(ctx, f.js, "IDX_DLQ", 0, 1<<20)
	} else {
		dead, err = redisstream.DeadLetters(ctx, f.rdb, dlq, "", 1<<20)
	}
	if err != nil {
		v.DLQGot = -1
		v.examples = append(v.examples, "dead letters: "+err.Error())
		return
	}
	v.DLQGot = len(dead)
	want := map[[32]byte]int{}
	for _, p := range poison {
		want[sha256.Sum256(p)]++
	}
	for _, d := range dead {
		// The digest of the whole payload: an oversized one keeps only
		// its first bytes (--dead-letter-max-bytes).
		h := sha256.Sum256(d.Data)
		if b, err := hex.DecodeString(d.SHA256); err == nil && len(b) == len(h) {
			copy(h[:], b)
		}
		if want[h] == 0 {
			v.DLQStray++
			if len(v.examples) < 10 {
				v.examples = append(v.examples, fmt.Sprintf("dead letter %s is not poison (reason %q): %.100q", d.ID, d.Reason, d.Data))
			}
			continue
		}
		want[h]--
	}
}

// http2xx reports whether GET url answers 2xx.
func http2xx(url string) bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode/100 == 2
}

// ackedNotApplied is the checker's probe while the workers run: it reads
// which messages the group has acknowledged (Redis: entries up to the
// group's last delivered one and not pending; NATS: up to the consumer's
// ack floor), at most the last 20,000 of them, and then whether each one's
// effect is in the index: a delete's path tombstoned and not live, a
// create's path live unless some event of the history (deletedEver, by
// "<db>:<table>\x00<path>") deletes it. A message is acknowledged only
// after its batch was applied, and these effects are permanent, so any
// miss is an acknowledged event lost. It returns the misses and how many
// acknowledged events it checked.
func (f *fenv) ackedNotApplied(ctx context.Context, deletedEver map[string]bool) (missing, checked int, err error) {
	const window = 20_000
	var payloads [][2]string // data, content type
	if f.source == "nats" {
		info, err := f.natsConsumer(ctx)
		if err != nil {
			return 0, 0, err
		}
		floor := info.AckFloor.Stream
		if floor == 0 {
			return 0, 0, nil
		}
		from := uint64(1)
		if floor > window {
			from = floor - window + 1
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, err := f.js.OrderedConsumer(cctx, "IDX_EVENTS", natsjs.OrderedConsumerConfig{
			DeliverPolicy: natsjs.DeliverByStartSequencePolicy, OptStartSeq: from})
		if err != nil {
			return 0, 0, err
		}
		for seq := from; seq <= floor; {
			batch, err := c.Fetch(int(min(floor-seq+1, 1000)), natsjs.FetchMaxWait(5*time.Second))
			if err != nil {
				return 0, 0, err
			}
			got := 0
			for m := range batch.Messages() {
				got++
				md, err := m.Metadata()
				if err != nil || md.Sequence.Stream > floor {
					seq = floor + 1
					break
				}
				seq = md.Sequence.Stream + 1
				payloads = append(payloads, [2]string{string(m.Data()), m.Headers().Get("Content-Type")})
			}
			if err := batch.Error(); err != nil {
				return 0, 0, err
			}
			if got == 0 {
				return 0, 0, fmt.Errorf("no message after %d (ack floor %d)", seq, floor)
			}
		}
	} else {
		var last string
		groups, err := f.rdb.XInfoGroups(ctx, stream).Result()
		if err != nil {
			return 0, 0, err
		}
		for _, g := range groups {
			if g.Name == group {
				last = g.LastDeliveredID
			}
		}
		pending := map[string]bool{}
		ps, err := f.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: group, Start: "-", End: "+", Count: 1 << 20}).Result()
		if err != nil {
			return 0, 0, err
		}
		for _, p := range ps {
			pending[p.ID] = true
		}
		xs, err := f.rdb.XRevRangeN(ctx, stream, last, "-", window).Result()
		if err != nil {
			return 0, 0, err
		}
		for _, x := range xs {
			if pending[x.ID] {
				continue
			}
			d, _ := x.Values["data"].(string)
			ct, _ := x.Values["ct"].(string)
			payloads = append(payloads, [2]string{d, ct})
		}
	}
	type probe struct {
		live *redis.BoolCmd
		tomb *redis.FloatCmd
		del  bool
		what string
	}
	var probes []probe
	pipe := f.rdb.Pipeline()
	for _, p := range payloads {
		format, err := event.ParseFormat(p[1])
		if err != nil {
			continue
		}
		e, err := event.Decode(format, []byte(p[0]))
		if err != nil {
			continue // poison: dead-lettered, not applied
		}
		checked++
		tb := e.Database + ":" + e.Table
		e.Files(func(fl *event.File, del bool) {
			if !del && deletedEver[tb+"\x00"+fl.Path] {
				return
			}
			pr := probe{live: pipe.HExists(ctx, "files:"+tb+":"+fl.Date(), fl.Path), del: del, what: e.ID + " " + fl.Path}
			if del {
				pr.tomb = pipe.ZScore(ctx, "idx:tomb:"+tb, fl.Path)
			}
			probes = append(probes, pr)
		})
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return 0, 0, err
	}
	for _, pr := range probes {
		if pr.del && (pr.live.Val() || pr.tomb.Err() != nil) || !pr.del && !pr.live.Val() {
			missing++
			if missing <= 5 {
				f.t.Logf("acknowledged and not in effect: event %s", pr.what)
			}
		}
	}
	return missing, checked, nil
}

// deletedPaths returns the paths ("<db>:<table>\x00<path>") some event of
// the history deletes.
func deletedPaths(events []event.Event) map[string]bool {
	out := map[string]bool{}
	for i := range events {
		e := &events[i]
		e.Files(func(fl *event.File, del bool) {
			if del {
				out[e.Database+":"+e.Table+"\x00"+fl.Path] = true
			}
		})
	}
	return out
}
