package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/streamindex/indexer/event"
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
	ContentType string    `json:"content_type"`
	Data        *string   `json:"data,omitempty"`        // the payload (or its first bytes), if it is JSON in UTF-8
	DataBase64  []byte    `json:"data_base64,omitempty"` // else, base64 (msgpack, invalid UTF-8)
	DataSize    int       `json:"data_size"`             // the whole payload's size
	DataSHA256  string    `json:"data_sha256,omitempty"` // the whole payload's SHA-256, hex
	Truncated   bool      `json:"truncated"`             // data holds only the first bytes: it cannot be requeued
}

// newDeadLetterDoc shows a JSON payload as text and any other (msgpack,
// invalid UTF-8) in base64, always with its content type.
func newDeadLetterDoc(d *consumer.StoredDeadLetter) deadLetterDoc {
	doc := deadLetterDoc{ID: d.ID, Time: d.Time.UTC(), Reason: d.Reason, Deliveries: d.Deliveries, OriginalID: d.OriginalID,
		Subject: d.Subject, ContentType: d.ContentType, DataSize: max(d.Size, len(d.Data)), DataSHA256: d.SHA256, Truncated: d.Truncated()}
	if doc.ContentType == "" {
		doc.ContentType = "json" // no ct: writers' default
	}
	if f, err := event.ParseFormat(doc.ContentType); err == nil && f == event.JSON && utf8.Valid(d.Data) {
		s := string(d.Data)
		doc.Data = &s
	} else {
		doc.DataBase64 = d.Data
		if doc.DataBase64 == nil {
			doc.DataBase64 = []byte{}
		}
	}
	return doc
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
			var moved, truncated []string // dead letter ids
			switch {
			case nats && *all:
				var tr []uint64
				n, tr, err = jetstream.RequeueAll(ctx, c.js, jetstream.RequeueConfig{DeadLetters: so.deadLetter}, progress)
				truncated = seqStrings(tr)
			case nats:
				var r []jetstream.Requeued
				var tr []uint64
				r, tr, err = jetstream.Requeue(ctx, c.js, jetstream.RequeueConfig{DeadLetters: so.deadLetter}, seqs)
				n, truncated = len(r), seqStrings(tr)
				for _, x := range r {
					moved = append(moved, strconv.FormatUint(x.DeadLetterSeq, 10))
				}
			case *all:
				n, truncated, err = redisstream.RequeueAll(ctx, c.rc, so.stream, so.deadLetter, progress)
			default:
				var r []lua.Requeued
				r, truncated, err = redisstream.Requeue(ctx, c.rc, so.stream, so.deadLetter, ids)
				n = len(r)
				for _, x := range r {
					moved = append(moved, x.DeadLetterID)
					fmt.Fprintf(a.stdout, "requeued %s as %s\n", x.DeadLetterID, x.NewID)
				}
			}
			fmt.Fprintf(a.stdout, "requeued %d dead letters to %s\n", n, so.stream)
			if err != nil {
				return err
			}
			asked := []string(ids)
			if nats {
				asked = seqStrings(seqs)
			}
			return requeueRefusals(asked, moved, truncated, so.deadLetter, *all)

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

// requeueRefusals is the error of a requeue that left some of the dead
// letters asked for: ids not found, and truncated dead letters (a prefix
// of an oversized payload), which cannot be requeued.
func requeueRefusals(asked, moved, truncated []string, deadLetters string, all bool) error {
	var problems []string
	if len(truncated) > 0 {
		problems = append(problems, fmt.Sprintf("refused %s: only the first bytes of the payload were kept (it was larger than the workers' --dead-letter-max-bytes), so requeueing it would publish a cut event; publish the event again from its writer, then remove the dead letter with 'indexer dlq purge'",
			plural(truncated, "truncated dead letter")))
	}
	if !all {
		done := map[string]bool{}
		for _, id := range append(moved, truncated...) {
			done[id] = true
		}
		var missing []string
		for _, id := range asked {
			if !done[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			problems = append(problems, fmt.Sprintf("%s not in %s (requeued or purged already? see 'indexer dlq list')", plural(missing, "dead letter"), deadLetters))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return errors.New(strings.Join(problems, "; "))
}

// plural names a list of ids: "dead letter 1-0" or "dead letters 1-0, 2-0".
func plural(ids []string, what string) string {
	if len(ids) == 1 {
		return what + " " + ids[0]
	}
	const show = 10
	list := strings.Join(ids[:min(len(ids), show)], ", ")
	if len(ids) > show {
		list += fmt.Sprintf(" and %d more", len(ids)-show)
	}
	return fmt.Sprintf("%d %ss %s", len(ids), what, list)
}

func seqStrings(seqs []uint64) []string {
	out := make([]string, len(seqs))
	for i, s := range seqs {
		out[i] = strconv.FormatUint(s, 10)
	}
	return out
}

func printDeadLetters(a *app, list []consumer.StoredDeadLetter, format, name string) error {
	if format == "json" {
		docs := make([]deadLetterDoc, len(list))
		for i := range list {
			docs[i] = newDeadLetterDoc(&list[i])
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
		doc := newDeadLetterDoc(&d)
		data := ""
		if doc.Data != nil {
			data = preview(d.Data, 120)
		} else {
			data = doc.ContentType + ", base64 " + preview([]byte(base64.StdEncoding.EncodeToString(d.Data)), 100)
		}
		if doc.Truncated {
			data += fmt.Sprintf("  (truncated: the first %d of %d bytes, sha256 %s; cannot be requeued)", len(d.Data), doc.DataSize, doc.DataSHA256)
		}
		fmt.Fprintf(a.stdout, "\n    reason: %s\n    data:   %s\n", d.Reason, data)
	}
	return nil
}
