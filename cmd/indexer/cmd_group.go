package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/consumer/jetstream"
	"github.com/streamindex/indexer/internal/consumer/redisstream"
)

func init() {
	register(&command{
		name: "group",
		args: "reset",
		summary: "reset --to <id | sequence | RFC 3339 time | earliest | latest>: move the workers' group (redis) or durable consumer (nats) " +
			"so it delivers that entry next; prints the old and new positions; --dry-run only shows them",
		setup: setupGroup,
	})
}

func setupGroup(fs *flag.FlagSet, a *app) func(context.Context, []string) error {
	oo := addOpsFlags(fs)
	to := fs.String("to", "", "the entry the group delivers next: an entry `position` (redis <ms>-<seq>, nats sequence), an RFC 3339 time "+
		"(the first entry stored at or after it), earliest or latest (only entries added from now on)")
	dryRun := fs.Bool("dry-run", false, "show the current and the new position; change nothing")
	return func(ctx context.Context, args []string) error {
		if len(args) != 1 || args[0] != "reset" {
			return usagef("give the verb: indexer group reset --to POSITION")
		}
		if err := oo.so.validate(); err != nil {
			return err
		}
		pos, err := parsePosition("to", *to, oo.so.source, true)
		if err != nil {
			return err
		}
		c, err := oo.open(ctx, a, noIndex)
		if err != nil {
			return err
		}
		defer c.close()
		if oo.so.source == sourceNATS {
			err = resetNATS(ctx, a.stdout, c, oo.so, pos, *dryRun)
		} else {
			err = resetRedis(ctx, a.stdout, c, oo.so, pos, *dryRun)
		}
		return explainRun(err, oo.so)
	}
}

func resetRedis(ctx context.Context, w io.Writer, c *conns, so *streamOptions, pos position, dryRun bool) error {
	var target string
	switch pos.kind {
	case posEarliest:
		target = "0"
	case posLatest:
		target = "$"
	case posTime:
		target = redisstream.StartAtTime(pos.t)
	default:
		target = redisstream.StartBefore(pos.id)
	}
	before, err := redisstream.GroupPosition(ctx, c.rc, so.stream, so.group)
	if err != nil {
		return err
	}
	nextBefore, err := redisstream.NextEntry(ctx, c.rc, so.stream, before.LastDeliveredID)
	if err != nil {
		return err
	}
	describe := func(info redisstream.GroupInfo, next string) string {
		lag := fmt.Sprint(info.Lag)
		if info.Lag < 0 {
			lag = "unknown"
		}
		return fmt.Sprintf("last delivered %s, next entry %s, lag %s, pending %d", info.LastDeliveredID, next, lag, info.Pending)
	}
	nextName := func(next *consumer.Position) string {
		if next == nil {
			return "none yet (only entries added from now on)"
		}
		return next.ID + " (" + utc(next.Time) + ")"
	}
	fmt.Fprintf(w, "group %q of stream %q (redis)\n", so.group, so.stream)
	fmt.Fprintf(w, "  before: %s\n", describe(before, nextName(nextBefore)))
	if dryRun {
		nextAfter, err := redisstream.NextEntry(ctx, c.rc, so.stream, target)
		if err != nil {
			return err
		}
		shown := target
		if target == "$" {
			shown = "the stream's last entry"
		}
		fmt.Fprintf(w, "  would set: last delivered %s, next entry %s\n", shown, nextName(nextAfter))
		fmt.Fprintln(w, "dry run: nothing changed")
		printMove(w, nextBefore, nextAfter)
		return nil
	}
	before, after, err := redisstream.SetGroupPosition(ctx, c.rc, so.stream, so.group, target)
	if err != nil {
		return err
	}
	nextAfter, err := redisstream.NextEntry(ctx, c.rc, so.stream, after.LastDeliveredID)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  after:  %s\n", describe(after, nextName(nextAfter)))
	if before.Pending > 0 {
		fmt.Fprintf(w, "the %d pending entries stay pending with their consumers (they are applied or claimed as before)\n", before.Pending)
	}
	printMove(w, nextBefore, nextAfter)
	return nil
}

// printMove says what a move means for the events between the positions.
func printMove(w io.Writer, from, to *consumer.Position) {
	switch {
	case from == nil && to == nil:
	case to == nil || from != nil && redisstream.CompareIDs(to.ID, from.ID) > 0:
		fmt.Fprintln(w, "moved forward: the entries in between are skipped by the workers (replay them with 'indexer replay' if needed)")
	case from == nil || redisstream.CompareIDs(to.ID, from.ID) < 0:
		fmt.Fprintln(w, "moved back: the entries in between are delivered again (harmless: applying an event again changes nothing)")
	}
}

func resetNATS(ctx context.Context, w io.Writer, c *conns, so *streamOptions, pos position, dryRun bool) error {
	seq, err := natsTarget(ctx, c, so, pos)
	if err != nil {
		return err
	}
	before, err := jetstream.Position(ctx, c.js, so.stream, so.group)
	if err != nil {
		return err
	}
	describe := func(p jetstream.ConsumerPosition) string {
		return fmt.Sprintf("last delivered sequence %d, ack floor %d, next sequence %d, lag %d, pending %d", p.Delivered, p.AckFloor, p.Delivered+1, p.Lag, p.Pending)
	}
	fmt.Fprintf(w, "consumer %q of stream %q (nats)\n", so.group, so.stream)
	fmt.Fprintf(w, "  before: %s\n", describe(before))
	if dryRun {
		fmt.Fprintf(w, "  would set: next sequence %d\n", seq)
		fmt.Fprintln(w, "dry run: nothing changed")
		printSeqMove(w, before.Delivered+1, seq)
		return nil
	}
	before, after, recreated, err := jetstream.ResetConsumer(ctx, c.js, so.stream, so.group, seq)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  after:  %s\n", describe(after))
	if recreated {
		fmt.Fprintln(w, "the server cannot reset a consumer in place: it was deleted and created again with the same settings")
	}
	if before.Pending > 0 {
		fmt.Fprintf(w, "the %d messages delivered and not acknowledged were forgotten by the server (their effect, if applied, stays)\n", before.Pending)
	}
	printSeqMove(w, before.Delivered+1, seq)
	return nil
}

func printSeqMove(w io.Writer, from, to uint64) {
	switch {
	case to > from:
		fmt.Fprintln(w, "moved forward: the messages in between are skipped by the workers (replay them with 'indexer replay' if needed)")
	case to < from:
		fmt.Fprintln(w, "moved back: the messages in between are delivered again (harmless: applying an event again changes nothing)")
	}
}

// natsTarget resolves a position to the stream sequence to deliver next.
func natsTarget(ctx context.Context, c *conns, so *streamOptions, pos position) (uint64, error) {
	switch pos.kind {
	case posID:
		return pos.seq, nil
	case posTime:
		seq, ok, err := jetstream.SeqAtTime(ctx, c.js, so.stream, pos.t)
		if err != nil || ok {
			return seq, err
		}
	case posEarliest:
		first, _, err := streamBounds(ctx, c, so)
		return first, err
	}
	_, last, err := streamBounds(ctx, c, so) // latest, or a time after every message
	return last + 1, err
}

func streamBounds(ctx context.Context, c *conns, so *streamOptions) (first, last uint64, err error) {
	st, err := jetstream.StreamState(ctx, c.js, so.stream)
	if err != nil {
		return 0, 0, err
	}
	if st.Msgs == 0 {
		// Empty: the next message gets the sequence after the last one.
		return st.LastSeq + 1, st.LastSeq, nil
	}
	return st.FirstSeq, st.LastSeq, nil
}
