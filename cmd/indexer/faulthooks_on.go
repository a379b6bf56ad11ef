//go:build failpoints

package main

// The negative controls of the fault-injection suite (test/integration):
// deliberately wrong workers, compiled only into binaries built with the
// failpoints tag, so that a test can show that the suite's checker reports
// the loss or the corruption they cause. Production binaries contain none
// of this (faulthooks_off.go).

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/failpoint"
	"github.com/streamindex/indexer/internal/index"
)

// faultHooks wraps the worker's source and applier as INDEXER_FAILPOINT's
// modes say (see internal/failpoint).
func faultHooks(src consumer.Source, x *index.Index, rc redis.UniversalClient, log *slog.Logger) (consumer.Source, consumer.Applier) {
	var a consumer.Applier = x
	if failpoint.Active(failpoint.AckBeforeApply) {
		log.Warn("NEGATIVE CONTROL: acknowledging messages before applying them (INDEXER_FAILPOINT=ack-before-apply)")
		src = &ackEarly{Source: src}
	}
	if failpoint.Active(failpoint.NoStateCheck) {
		log.Warn("NEGATIVE CONTROL: applying events without patch_index's per-path state (INDEXER_FAILPOINT=no-state-check)")
		a = &naiveApplier{c: rc, layout: x.Layout()}
	}
	return src, a
}

// ackEarly acknowledges every message as soon as it was fetched, before
// the loop applies it: a worker that dies before applying loses them.
type ackEarly struct {
	consumer.Source
}

func (s *ackEarly) Fetch(ctx context.Context, max int, wait time.Duration) ([]consumer.Message, error) {
	msgs, err := s.Source.Fetch(ctx, max, wait)
	if len(msgs) > 0 {
		if aerr := s.Source.Ack(ctx, msgs); aerr != nil && err == nil {
			err = aerr
		}
		// NATS sends acks asynchronously: wait until the server recorded
		// them, so that a crash right after surely loses the messages.
		if f, ok := s.Source.(interface{ Flush(context.Context) error }); ok {
			f.Flush(ctx)
		}
	}
	return msgs, err
}

// The loop renews leases, reads the backlog and checks events through
// optional interfaces; keep them.
func (s *ackEarly) ExtendEvery() time.Duration {
	if e, ok := s.Source.(consumer.Extender); ok {
		return e.ExtendEvery()
	}
	return 0
}

func (s *ackEarly) Extend(ctx context.Context, msgs []consumer.Message) error {
	return s.Source.(consumer.Extender).Extend(ctx, msgs)
}

func (s *ackEarly) CheckEvent(m *consumer.Message, e *event.Event) error {
	if c, ok := s.Source.(consumer.Checker); ok {
		return c.CheckEvent(m, e)
	}
	return nil
}

func (s *ackEarly) Backlog(ctx context.Context) (consumer.Backlog, error) {
	if b, ok := s.Source.(consumer.BacklogReporter); ok {
		return b.Backlog(ctx)
	}
	return consumer.Backlog{Lag: -1, Pending: -1, DeadLetters: -1}, nil
}

// naiveApplier writes the index as GigAPI's own library does: per file a
// plain HSET (or HDEL) and HINCRBYs of the counters, with no record of a
// path's state. A redelivered create counts its file again, a delete is
// counted whether or not the file was there, a create arriving after its
// delete brings the file back, and no tombstone is kept.
type naiveApplier struct {
	c      redis.UniversalClient
	layout index.Layout
}

func (n *naiveApplier) Apply(ctx context.Context, events []event.Event) (index.Result, error) {
	res := index.Result{Outcomes: make([]index.Outcome, len(events))}
	pipe := n.c.Pipeline()
	for i := range events {
		e := &events[i]
		l := n.layout
		res.Outcomes[i] = index.Applied
		pipe.SAdd(ctx, l.Tables(), l.Member(e.Database, e.Table))
		e.Files(func(f *event.File, deleted bool) {
			part := l.Part(e.Database, e.Table, f.Date())
			files, folders, stats := l.Files(e.Database, e.Table, f.Date()), l.Folders(part), l.Stats(part)
			if l.Cluster() {
				pipe.SAdd(ctx, l.Dates(e.Database, e.Table), f.Date())
			}
			if deleted {
				pipe.HDel(ctx, files, f.Path)
				pipe.HIncrBy(ctx, folders, f.Dir(), -1)
				pipe.HIncrBy(ctx, stats, "files", -1)
				pipe.HIncrBy(ctx, stats, "files:"+f.Date(), -1)
				return
			}
			en := index.Entry{Layer: f.Layer, Database: e.Database, Table: e.Table, Path: f.Path, SizeBytes: f.SizeBytes,
				RowCount: f.RowCount, ChunkTime: f.ChunkTime, MinTime: f.MinTime, MaxTime: f.MaxTime,
				Min: f.Min.AppendJSON(nil), Max: f.Max.AppendJSON(nil), WriterID: f.WriterID}
			pipe.HSet(ctx, files, f.Path, en.AppendJSON(nil))
			pipe.HIncrBy(ctx, folders, f.Dir(), 1)
			for _, c := range [...]struct {
				field string
				v     int64
			}{{"files", 1}, {"bytes", f.SizeBytes}, {"rows", f.RowCount}} {
				pipe.HIncrBy(ctx, stats, c.field, c.v)
				pipe.HIncrBy(ctx, stats, c.field+":"+f.Date(), c.v)
			}
		})
	}
	_, err := pipe.Exec(ctx)
	res.Calls = 1
	return res, err
}
