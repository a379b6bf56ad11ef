package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/consumer/jetstream"
	"github.com/streamindex/indexer/internal/consumer/redisstream"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/progress"
	"github.com/streamindex/indexer/internal/replay"
)

func init() {
	register(&command{
		name: "replay",
		summary: "re-apply the stream from --from (an id, sequence or RFC 3339 time) up to its end as it is now (or --to), through a temporary " +
			"group that is removed afterwards; idempotent; prints the outcomes",
		setup: setupReplay,
	})
}

// staleReplayAge: replay groups whose consumers have been idle this long
// were left by a killed replay and are removed.
const staleReplayAge = time.Hour

// replayRange is a temporary group or consumer with what the command
// prints about it.
type replayRange interface {
	replay.Range
	Total() int64
	Close(ctx context.Context) error
}

// replayDoc is the JSON summary of a replay.
type replayDoc struct {
	Source          string           `json:"source"`
	Stream          string           `json:"stream"`
	Group           string           `json:"group"`
	From            string           `json:"from"`
	To              string           `json:"to"`
	Complete        bool             `json:"complete"`
	Messages        int64            `json:"messages"`
	Outcomes        map[string]int64 `json:"outcomes"`
	Invalid         int64            `json:"invalid"`
	Refused         int64            `json:"refused"`
	Lost            int64            `json:"lost"`
	Samples         []replay.Sample  `json:"samples,omitempty"`
	DurationSeconds float64          `json:"duration_seconds"`
}

func setupReplay(fs *flag.FlagSet, a *app) func(context.Context, []string) error {
	oo := addOpsFlags(fs)
	do := addDecoderFlags(fs)
	addQueueFlags(fs, oo.ro, do, false) // a replay keeps the queues as the workers do
	addWaitFlags(fs, oo.ro, "each batch's index write")
	from := fs.String("from", "", "first entry to re-apply: an entry id (redis <ms>-<seq> or <ms>), a sequence (nats), an RFC 3339 `position` "+
		"(the first entry stored at or after it) or earliest")
	to := fs.String("to", "", "last entry to re-apply, inclusive, in the same forms (latest or empty: the stream's last entry when the replay starts)")
	var batch, maxDeliver int
	intVar(fs, &batch, "batch-size", 1000, 1, "most `events` per batch")
	intVar(fs, &maxDeliver, "max-deliver", 5, 1, "an event the index refuses this many `times` is given up and reported")
	format := fs.String("format", "text", "summary `format`: text or json")
	quiet := fs.Bool("quiet", false, "no progress bar or progress lines")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected argument %q", args[0])
		}
		if *format != "text" && *format != "json" {
			return usagef("--format %q: use text or json", *format)
		}
		if err := oo.so.validate(); err != nil {
			return err
		}
		fromPos, err := parsePosition("from", *from, oo.so.source, true)
		if err != nil {
			return err
		}
		if fromPos.kind == posLatest {
			return usagef("--from latest replays nothing; give an id, a sequence, a time or earliest")
		}
		toPos := position{kind: posLatest}
		if *to != "" {
			if toPos, err = parsePosition("to", *to, oo.so.source, false); err != nil {
				return err
			}
		}
		dec, err := do.decoder(oo.ro.layout)
		if err != nil {
			return err
		}
		c, err := oo.open(ctx, a, writesIndex)
		if err != nil {
			return err
		}
		defer c.close()
		log := c.log

		var rng replayRange
		var name, fromS, toS string
		if oo.so.source == sourceNATS {
			var r *jetstream.Replay
			r, err = openNATSReplay(ctx, c, oo.so, fromPos, toPos, maxDeliver)
			if r != nil {
				rng, name = r, r.Name()
				fromS, toS = fmt.Sprint(r.Start()), fmt.Sprint(r.End())
			}
		} else {
			var r *redisstream.Replay
			r, err = openRedisReplay(ctx, c, oo.so, fromPos, toPos)
			if r != nil {
				rng, name = r, r.Group()
				fromS, toS = redisFrom(fromPos), r.End()
			}
		}
		if errors.Is(err, redisstream.ErrNothingToReplay) || errors.Is(err, jetstream.ErrNothingToReplay) {
			fmt.Fprintf(a.stdout, "nothing to replay: stream %s holds no entry in that range\n", oo.so.stream)
			return nil
		}
		if err != nil {
			return explainRun(err, oo.so)
		}
		defer func() {
			if err := rng.Close(ctx); err != nil {
				log.Error("replay: removing the temporary group failed", "err", err)
			} else {
				log.Info("replay: temporary group removed", "replay_group", name)
			}
		}()
		log.Info("replay started", "replay_group", name, "from", fromS, "to", toS, "estimated", rng.Total())

		bar := progress.New(a.stderr, a.stderrTTY, "replayed", rng.Total())
		if !*quiet {
			bar.Start()
		}
		start := time.Now()
		sum, err := replay.Run(ctx, replay.Config{Range: rng, Index: c.x, Decoder: dec, BatchSize: batch, MaxDeliver: maxDeliver,
			Logger: log, Progress: func(n int64) { bar.Set(n) }})
		if !*quiet {
			if err == nil && sum.Complete {
				bar.SetTotal(bar.Count()) // the estimate may have been interpolated: end at 100%
			}
			bar.Stop()
		}
		doc := replayDoc{Source: oo.so.source, Stream: oo.so.stream, Group: name, From: fromS, To: toS, Complete: sum.Complete,
			Messages: sum.Messages, Outcomes: map[string]int64{}, Invalid: sum.Invalid, Refused: sum.Refused, Lost: sum.Lost,
			Samples: sum.Samples, DurationSeconds: seconds(time.Since(start))}
		for _, o := range index.AllOutcomes {
			doc.Outcomes[o.String()] = sum.Outcomes[o]
		}
		if *format == "json" {
			enc := json.NewEncoder(a.stdout)
			enc.SetIndent("", "  ")
			enc.Encode(doc)
		} else {
			printReplay(a.stdout, doc)
		}
		switch {
		case errors.Is(err, consumer.ErrGroupMissing):
			return fmt.Errorf("the temporary group %s was removed while the replay ran (by hand, or by the server after a long stall): %v; run the replay again (it is idempotent)", name, err)
		case err != nil:
			return explainRun(err, oo.so)
		case !sum.Complete:
			return fmt.Errorf("interrupted after %d messages; the temporary group is removed; run the replay again (it is idempotent)", sum.Messages)
		case sum.Refused > 0:
			return fmt.Errorf("%d events could not be applied (the index refused them %d times; see the log and 'indexer check')", sum.Refused, maxDeliver)
		}
		return nil
	}
}

func redisFrom(p position) string {
	switch p.kind {
	case posEarliest:
		return "0-0"
	case posTime:
		return fmt.Sprintf("%d-0", max(p.t.UnixMilli(), 0))
	}
	return p.id
}

func openRedisReplay(ctx context.Context, c *conns, so *streamOptions, from, to position) (*redisstream.Replay, error) {
	if removed, err := redisstream.RemoveStaleReplayGroups(ctx, c.rc, so.stream, staleReplayAge); err != nil {
		c.log.Warn("replay: looking for replay groups left by killed replays failed", "err", err)
	} else if len(removed) > 0 {
		c.log.Warn("replay: removed replay groups left by killed replays", "groups", removed)
	}
	cfg := redisstream.ReplayConfig{Stream: so.stream, From: redisFrom(from), Logger: c.log}
	switch to.kind {
	case posID:
		cfg.To = to.id
	case posTime:
		cfg.To = redisstream.LastAtTime(to.t)
	case posEarliest:
		return nil, usagef("--to earliest replays nothing")
	}
	return redisstream.NewReplay(ctx, c.rc, cfg)
}

func openNATSReplay(ctx context.Context, c *conns, so *streamOptions, from, to position, maxDeliver int) (*jetstream.Replay, error) {
	cfg := jetstream.ReplayConfig{Stream: so.stream, MaxDeliver: maxDeliver, Logger: c.log}
	switch from.kind {
	case posID:
		cfg.From = from.seq
	case posTime:
		seq, ok, err := jetstream.SeqAtTime(ctx, c.js, so.stream, from.t)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, jetstream.ErrNothingToReplay
		}
		cfg.From = seq
	}
	switch to.kind {
	case posID:
		cfg.To = to.seq
	case posTime:
		// The last message stored at or before the time: the one before
		// the first stored after it.
		seq, ok, err := jetstream.SeqAtTime(ctx, c.js, so.stream, to.t.Add(time.Nanosecond))
		if err != nil {
			return nil, err
		}
		if ok {
			if seq <= 1 {
				return nil, jetstream.ErrNothingToReplay
			}
			cfg.To = seq - 1
		}
	case posEarliest:
		return nil, usagef("--to earliest replays nothing")
	}
	return jetstream.NewReplay(ctx, c.js, cfg)
}

func printReplay(w io.Writer, d replayDoc) {
	state := "replayed"
	if !d.Complete {
		state = "INTERRUPTED replay of"
	}
	fmt.Fprintf(w, "%s %s %s from %s to %s: %d messages in %s (temporary group %s)\n",
		state, d.Source, d.Stream, d.From, d.To, d.Messages, roundDuration(time.Duration(d.DurationSeconds*float64(time.Second))), d.Group)
	for _, o := range index.AllOutcomes {
		fmt.Fprintf(w, "  %-20s %d\n", o.String(), d.Outcomes[o.String()])
	}
	fmt.Fprintf(w, "  %-20s %d   (dead-lettered when the workers read them; not dead-lettered again)\n", "invalid", d.Invalid)
	fmt.Fprintf(w, "  %-20s %d\n", "refused", d.Refused)
	fmt.Fprintf(w, "  %-20s %d\n", "lost", d.Lost)
	for _, s := range d.Samples {
		fmt.Fprintf(w, "  %s: %s\n", s.ID, s.Reason)
	}
	if d.Complete && d.Outcomes[index.Applied.String()] == 0 && d.Outcomes[index.Tombstoned.String()] == 0 {
		fmt.Fprintln(w, "the index already held every event: nothing changed")
	}
}
