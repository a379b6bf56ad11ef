package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/consumer/jetstream"
	"github.com/streamindex/indexer/internal/consumer/redisstream"
	"github.com/streamindex/indexer/internal/lua"
)

func init() {
	register(&command{
		name: "dlq",
		args: "list | requeue | purge",
		summary: "the dead letters: list [--limit N] shows them; requeue --id ID… | --all publishes them back to the stream " +
			"(and removes them from the dead letters once published); purge deletes them all",
		setup: setupDLQ,
	})
}

// deadLetterDoc is the JSON form of a dead letter.
type deadLetterDoc struct {
	ID          string    `json:"id"`
	Time        time.Time `json:"time"`
	Reason      string    `json:"reason"`
	Deliveries  int       `json:"deliveries"`
	OriginalID  string    `json:"original_id"`
	Subject     string    `json:"subject,omitempty"`
	ContentType string    `json:"content_type,omitempty"`
	Data        string    `json:"data,omitempty"`        // the payload, if it is UTF-8
	DataBase64  []byte    `json:"data_base64,omitempty"` // else, base64
}

func setupDLQ(fs *flag.FlagSet, a *app) func(context.Context, []string) error {
	oo := addOpsFlags(fs)
	limit := fs.Int("limit", 20, "list: show at most `N` dead letters, oldest first")
	after := fs.String("after", "", "list: start after this dead letter `id`")
	format := fs.String("format", "table", "list: output `format`: table or json")
	var ids stringList
	fs.Var(&ids, "id", "requeue: the dead letter `id` to requeue (as 'dlq list' shows it); repeat it or separate ids with commas")
	all := fs.Bool("all", false, "requeue: every dead letter there is when the command starts")
	return func(ctx context.Context, args []string) error {
		if len(args) != 1 {
			return usagef("give one verb: list, requeue or purge")
		}
		verb := args[0]
		switch verb {
		case "list":
			if *limit < 1 {
				return usagef("--limit must be at least 1")
			}
			if *format != "table" && *format != "json" {
				return usagef("--format %q: use table or json", *format)
			}
		case "requeue":
			if (len(ids) > 0) == *all {
				return usagef("requeue needs --id ID (one or more) or --all")
			}
		case "purge":
		default:
			return usagef("unknown verb %q: use list, requeue or purge", verb)
		}
		if err := oo.so.validate(); err != nil {
			return err
		}
		c, err := oo.open(ctx, a, noIndex)
		if err != nil {
			return err
		}
		defer c.close()
		so := oo.so
		nats := so.source == sourceNATS
		var seqs []uint64
		if nats {
			for _, id := range ids {
				seq, err := strconv.ParseUint(id, 10, 64)
				if err != nil {
					return usagef("--id %q: a NATS dead letter's id is its sequence in %s", id, so.deadLetter)
				}
				seqs = append(seqs, seq)
			}
		} else {
			for _, id := range ids {
				if _, err := redisstream.ParseID(id, true); err != nil {
					return usagef("--id: %v", err)
				}
			}
		}

		switch verb {
		case "list":
			var list []consumer.StoredDeadLetter
			if nats {
				var from uint64
				if *after != "" {
					if from, err = strconv.ParseUint(*after, 10, 64); err != nil {
						return usagef("--after %q: give a sequence", *after)
					}
				}
				list, err = jetstream.DeadLetters(ctx, c.js, so.deadLetter, from, *limit)
			} else {
				list, err = redisstream.DeadLetters(ctx, c.rc, so.deadLetter, *after, *limit)
			}
			if err != nil {
				return err
			}
			return printDeadLetters(a, list, *format, so.deadLetter)

		case "requeue":
			n := 0
			progress := func(k int) { n = k }
			switch {
			case nats && *all:
				n, err = jetstream.RequeueAll(ctx, c.js, jetstream.RequeueConfig{DeadLetters: so.deadLetter}, progress)
			case nats:
				var r []jetstream.Requeued
				r, err = jetstream.Requeue(ctx, c.js, jetstream.RequeueConfig{DeadLetters: so.deadLetter}, seqs)
				n = len(r)
			case *all:
				n, err = redisstream.RequeueAll(ctx, c.rc, so.stream, so.deadLetter, progress)
			default:
				var r []lua.Requeued
				r, err = redisstream.Requeue(ctx, c.rc, so.stream, so.deadLetter, ids)
				n = len(r)
				for _, x := range r {
					fmt.Fprintf(a.stdout, "requeued %s as %s\n", x.DeadLetterID, x.NewID)
				}
			}
			fmt.Fprintf(a.stdout, "requeued %d dead letters to %s\n", n, so.stream)
			if err == nil && len(ids) > n {
				fmt.Fprintf(a.stderr, "%d of the ids given were not in %s (requeued or purged already?)\n", len(ids)-n, so.deadLetter)
			}
			return err

		default: // purge
			var n int64
			if nats {
				n, err = jetstream.PurgeDeadLetters(ctx, c.js, so.deadLetter)
			} else {
				n, err = redisstream.PurgeDeadLetters(ctx, c.rc, so.deadLetter)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "purged %d dead letters from %s\n", n, so.deadLetter)
			return nil
		}
	}
}

func printDeadLetters(a *app, list []consumer.StoredDeadLetter, format, name string) error {
	if format == "json" {
		docs := make([]deadLetterDoc, len(list))
		for i, d := range list {
			docs[i] = deadLetterDoc{ID: d.ID, Time: d.Time.UTC(), Reason: d.Reason, Deliveries: d.Deliveries, OriginalID: d.OriginalID,
				Subject: d.Subject, ContentType: d.ContentType}
			if utf8.Valid(d.Data) {
				docs[i].Data = string(d.Data)
			} else {
				docs[i].DataBase64 = d.Data
			}
		}
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(docs)
	}
	if len(list) == 0 {
		fmt.Fprintf(a.stdout, "no dead letters in %s\n", name)
		return nil
	}
	now := time.Now()
	for _, d := range list {
		fmt.Fprintf(a.stdout, "%s  dead-lettered %s (%s), %d deliveries, original %s", d.ID, utc(d.Time), ago(now, d.Time), d.Deliveries, d.OriginalID)
		if d.Subject != "" {
			fmt.Fprintf(a.stdout, " on %s", d.Subject)
		}
		fmt.Fprintf(a.stdout, "\n    reason: %s\n    data:   %s\n", d.Reason, preview(d.Data, 120))
	}
	return nil
}
