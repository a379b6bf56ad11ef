package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/consumer/jetstream"
	"github.com/streamindex/indexer/internal/consumer/redisstream"
)

func init() {
	register(&command{
		name: "status",
		summary: "the source (stream length, first/last entry, group lag and pending, consumers, dead letters) and each table's " +
			"counters and freshness; only reads",
		setup: setupStatus,
	})
}

// statusDoc is the JSON form of 'indexer status'. Durations are seconds.
type statusDoc struct {
	Source      string         `json:"source"`
	Stream      streamDoc      `json:"stream"`
	Group       groupDoc       `json:"group"`
	DeadLetters deadLettersDoc `json:"dead_letters"`
	OtherGroups []string       `json:"other_groups"`
	Tables      []tableDoc     `json:"tables"`
}

type posDoc struct {
	ID         string    `json:"id"`
	Time       time.Time `json:"time"`
	AgeSeconds float64   `json:"age_seconds"`
}

type streamDoc struct {
	Name   string  `json:"name"`
	Length int64   `json:"length"`
	Bytes  int64   `json:"bytes,omitempty"`
	First  *posDoc `json:"first"`
	Last   *posDoc `json:"last"`
}

type pendingDoc struct {
	posDoc
	IdleSeconds float64 `json:"idle_seconds,omitempty"`
	Deliveries  int64   `json:"deliveries,omitempty"`
	Consumer    string  `json:"consumer,omitempty"`
}

type consumerDoc struct {
	Name        string  `json:"name"`
	Pending     int64   `json:"pending"`
	IdleSeconds float64 `json:"idle_seconds"`
	Waiting     int     `json:"waiting,omitempty"`
}

type groupDoc struct {
	Name          string        `json:"name"`
	Missing       bool          `json:"missing,omitempty"`
	LastDelivered string        `json:"last_delivered"`
	Lag           int64         `json:"lag"`
	LagEstimated  bool          `json:"lag_estimated,omitempty"`
	Pending       int64         `json:"pending"`
	Redelivered   int64         `json:"redelivered,omitempty"`
	OldestPending *pendingDoc   `json:"oldest_pending"`
	Consumers     []consumerDoc `json:"consumers"`
}

type deadLettersDoc struct {
	Name   string  `json:"name"`
	Count  int64   `json:"count"`
	Oldest *posDoc `json:"oldest"`
}

func setupStatus(fs *flag.FlagSet, a *app) func(context.Context, []string) error {
	oo := addOpsFlags(fs)
	format := fs.String("format", "table", "output `format`: table or json")
	fo := addFailFlags(fs)
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected argument %q", args[0])
		}
		if *format != "table" && *format != "json" {
			return usagef("--format %q: use table or json", *format)
		}
		c, err := oo.open(ctx, a, readsIndex)
		if err != nil {
			return err
		}
		defer c.close()
		so := oo.so
		var st consumer.StreamStatus
		if so.source == sourceNATS {
			st, err = jetstream.Status(ctx, c.js, so.stream, so.group, so.deadLetter)
		} else {
			st, err = redisstream.Status(ctx, c.rc, so.stream, so.group, so.deadLetter)
		}
		if err != nil {
			return explainRun(err, so)
		}
		now := time.Now()
		doc := statusDocument(so.source, st, now)
		if doc.Tables, err = tableDocs(ctx, c.x, nil, now, false); err != nil {
			return err
		}
		if *format == "json" {
			enc := json.NewEncoder(a.stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(doc); err != nil {
				return err
			}
		} else {
			printStatus(a.stdout, doc)
		}
		return fo.check(doc)
	}
}

// failOptions are the thresholds of 'indexer status' that make it exit 1,
// for cron jobs and alerting.
type failOptions struct {
	lag         int64
	deadLetters bool
}

func addFailFlags(fs *flag.FlagSet) *failOptions {
	o := &failOptions{}
	fs.Int64Var(&o.lag, "fail-on-lag", -1,
		"exit 1 when the group's lag (messages not read yet) exceeds `N`, or the group is missing (default -1: never)")
	fs.BoolVar(&o.deadLetters, "fail-on-dead-letters", false,
		"exit 1 when the dead-letter stream holds any message, or the group is missing")
	return o
}

// check returns the error that makes status exit 1 when doc crosses a
// threshold: one line naming each one crossed.
func (o *failOptions) check(doc statusDoc) error {
	if o.lag < 0 && !o.deadLetters {
		return nil
	}
	var why []string
	g := doc.Group
	switch {
	case g.Missing:
		why = append(why, fmt.Sprintf("group %q of %s is missing (run 'indexer setup --source %s')", g.Name, doc.Stream.Name, doc.Source))
	case o.lag >= 0 && g.Lag > o.lag && g.LagEstimated:
		why = append(why, fmt.Sprintf("lag of group %q is at most %d (Redis cannot count it exactly), more than --fail-on-lag %d", g.Name, g.Lag, o.lag))
	case o.lag >= 0 && g.Lag > o.lag:
		why = append(why, fmt.Sprintf("lag of group %q is %d, more than --fail-on-lag %d", g.Name, g.Lag, o.lag))
	}
	if o.deadLetters && doc.DeadLetters.Count > 0 {
		why = append(why, fmt.Sprintf("%s holds %d dead letters (--fail-on-dead-letters; see 'indexer dlq list')", doc.DeadLetters.Name, doc.DeadLetters.Count))
	}
	if len(why) == 0 {
		return nil
	}
	return errors.New(strings.Join(why, "; "))
}

func statusDocument(source string, st consumer.StreamStatus, now time.Time) statusDoc {
	pos := func(p *consumer.Position) *posDoc {
		if p == nil {
			return nil
		}
		return &posDoc{ID: p.ID, Time: p.Time.UTC(), AgeSeconds: seconds(now.Sub(p.Time))}
	}
	g := st.Group
	doc := statusDoc{
		Source: source,
		Stream: streamDoc{Name: st.Stream, Length: st.Length, Bytes: st.Bytes, First: pos(st.First), Last: pos(st.Last)},
		Group: groupDoc{Name: g.Name, Missing: g.Missing, LastDelivered: g.LastDelivered, Lag: g.Lag, LagEstimated: g.LagEstimated,
			Pending: g.Pending, Redelivered: g.Redelivered, Consumers: []consumerDoc{}},
		DeadLetters: deadLettersDoc{Name: st.DeadLetters.Name, Count: st.DeadLetters.Count, Oldest: pos(st.DeadLetters.Oldest)},
		OtherGroups: st.OtherGroups,
		Tables:      []tableDoc{},
	}
	if doc.OtherGroups == nil {
		doc.OtherGroups = []string{}
	}
	if p := g.OldestPending; p != nil {
		doc.Group.OldestPending = &pendingDoc{posDoc: *pos(&p.Position), IdleSeconds: seconds(p.Idle), Deliveries: p.Deliveries, Consumer: p.Consumer}
	}
	for _, c := range g.Consumers {
		idle := seconds(c.Idle)
		if c.Idle < 0 {
			idle = -1
		}
		doc.Group.Consumers = append(doc.Group.Consumers, consumerDoc{Name: c.Name, Pending: c.Pending, IdleSeconds: idle, Waiting: c.Waiting})
	}
	return doc
}

func printStatus(w io.Writer, d statusDoc) {
	pos := func(p *posDoc) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%s (%s, %s ago)", p.ID, utc(p.Time), roundDuration(time.Duration(p.AgeSeconds*float64(time.Second))))
	}
	secs := func(s float64) string { return roundDuration(time.Duration(s * float64(time.Second))) }
	fmt.Fprintf(w, "SOURCE      %s\n", d.Source)
	fmt.Fprintf(w, "STREAM      %s: %d messages", d.Stream.Name, d.Stream.Length)
	if d.Stream.Bytes > 0 {
		fmt.Fprintf(w, ", %d bytes", d.Stream.Bytes)
	}
	fmt.Fprintf(w, "\n            first %s\n            last  %s\n", pos(d.Stream.First), pos(d.Stream.Last))
	g := d.Group
	if g.Missing {
		fmt.Fprintf(w, "GROUP       %s: MISSING (create it with 'indexer setup --source %s')\n", g.Name, d.Source)
	} else {
		lag := fmt.Sprint(g.Lag)
		if g.LagEstimated {
			lag = "at most " + lag + " (Redis cannot count exactly)"
		}
		fmt.Fprintf(w, "GROUP       %s: last delivered %s, lag %s, pending %d", g.Name, g.LastDelivered, lag, g.Pending)
		if g.Redelivered > 0 {
			fmt.Fprintf(w, " (%d redelivered)", g.Redelivered)
		}
		fmt.Fprintln(w)
		if p := g.OldestPending; p != nil {
			fmt.Fprintf(w, "            oldest pending %s", pos(&p.posDoc))
			if p.Consumer != "" {
				fmt.Fprintf(w, ", held by %s, idle %s, %d deliveries", p.Consumer, secs(p.IdleSeconds), p.Deliveries)
			}
			fmt.Fprintln(w)
		}
		if len(g.Consumers) > 0 {
			fmt.Fprintf(w, "            %-40s %10s %12s %8s\n", "CONSUMER", "PENDING", "IDLE", "WAITING")
			for _, c := range g.Consumers {
				idle := "never"
				if c.IdleSeconds >= 0 {
					idle = secs(c.IdleSeconds)
				}
				fmt.Fprintf(w, "            %-40s %10d %12s %8d\n", c.Name, c.Pending, idle, c.Waiting)
			}
		}
	}
	fmt.Fprintf(w, "DEAD LETTERS %s: %d", d.DeadLetters.Name, d.DeadLetters.Count)
	if d.DeadLetters.Oldest != nil {
		fmt.Fprintf(w, ", oldest %s ('indexer dlq list')", pos(d.DeadLetters.Oldest))
	}
	fmt.Fprintln(w)
	if len(d.OtherGroups) > 0 {
		fmt.Fprintf(w, "OTHER GROUPS %s\n", strings.Join(d.OtherGroups, ", "))
	}
	fmt.Fprintln(w)
	printTables(w, d.Tables)
}
