package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/index"
)

func init() {
	register(&command{
		name: "plan",
		args: "next|done|publish",
		summary: "work GigAPI's merge, move and drop queues: 'next' leases the next due item and prints it with a fencing token, " +
			"'done' releases it (only with its current token), 'publish' publishes due items now",
		setup: setupPlan,
	})
}

func setupPlan(fs *flag.FlagSet, a *app) func(context.Context, []string) error {
	ro := addIndexFlags(fs)
	addQueueFlags(fs, ro, nil, false)
	var ref index.QueueRef
	var kind string
	fs.StringVar(&kind, "kind", "merge", "queue `kind`: merge, move or drop")
	fs.StringVar(&ref.Database, "database", "", "`database` of the table (required for next and done)")
	fs.StringVar(&ref.Table, "table", "", "`table` (required for next and done)")
	fs.StringVar(&ref.Layer, "layer", "", "storage `layer` of the queue (required for next)")
	fs.StringVar(&ref.Writer, "writer", "", "writer `id` of the queue (GigAPI's writers use the empty default)")
	fs.IntVar(&ref.Iteration, "iteration", 0, "merge: take items of iteration `N` only (0: any)")
	id := fs.String("id", "", "done: the item `id` next printed")
	token := fs.String("token", "", "done: the fencing `token` next printed")
	return func(ctx context.Context, args []string) error {
		if len(args) != 1 {
			return usagef("name one verb: next, done or publish")
		}
		ref.Kind = event.PlanKind(kind)
		if kind != "merge" && kind != "move" && kind != "drop" {
			return usagef("--kind %q: use merge, move or drop", kind)
		}
		verb := args[0]
		switch verb {
		case "next":
			if ref.Database == "" || ref.Table == "" || ref.Layer == "" {
				return usagef("plan next needs --database, --table and --layer")
			}
		case "done":
			if ref.Database == "" || ref.Table == "" || *id == "" || *token == "" {
				return usagef("plan done needs --database, --table, --id and --token")
			}
		case "publish":
		default:
			return usagef("unknown verb %q: use next, done or publish", verb)
		}
		x, c, err := ro.openIndex(ctx, index.Config{})
		if err != nil {
			return err
		}
		defer c.Close()
		switch verb {
		case "next":
			l, err := x.Next(ctx, ref)
			if errors.Is(err, index.ErrNoItem) {
				// Nothing due: JSON null, exit 0 (a worker polls again).
				fmt.Fprintln(a.stdout, "null")
				return nil
			}
			if err != nil {
				return err
			}
			enc := json.NewEncoder(a.stdout)
			enc.SetEscapeHTML(false)
			return enc.Encode(l)
		case "done":
			if err := x.Done(ctx, ref, *id, *token); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "released %s\n", *id)
			return nil
		default:
			n, err := x.Publish(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "published %d items\n", n)
			return nil
		}
	}
}
