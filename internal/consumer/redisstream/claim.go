package redisstream

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/lua"
)

// recoverPage is how many of its own pending entries a recovery lists per
// XPENDING call.
const recoverPage = 1000

// claimCount is the most entries one claim pass takes over.
const claimCount = 1000

// recoverOwn hands out up to max of this consumer's own pending entries
// that are not in flight: entries delivered by a fetch whose reply was
// lost (cancelled, or a network error), or left by an earlier process of
// the same name. It lists them with XPENDING (which does not touch them)
// and reads their payloads with pipelined XRANGEs; their delivery count is
// the one Redis recorded. Entries whose payload is gone come back Lost.
// When the whole list was scanned, recovery ends until the next unclean
// fetch.
func (s *Source) recoverOwn(ctx context.Context, max int) ([]consumer.Message, error) {
	for s.recovering {
		page, err := s.c.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: s.cfg.Stream, Group: s.cfg.Group, Consumer: s.cfg.Consumer,
			Start: s.recoverFrom, End: "+", Count: recoverPage,
		}).Result()
		if err != nil {
			return nil, s.wrap("recover: xpending", err)
		}
		var todo []redis.XPendingExt
		next, done := "", len(page) < recoverPage
		s.mu.Lock()
		for _, p := range page {
			if _, held := s.inflight[p.ID]; held {
				continue
			}
			if todo = append(todo, p); len(todo) == max {
				next, done = "("+p.ID, false
				break
			}
		}
		s.mu.Unlock()
		if next == "" && len(page) > 0 {
			next = "(" + page[len(page)-1].ID
		}
		var msgs []consumer.Message
		if len(todo) > 0 {
			if msgs, err = s.loadPending(ctx, todo); err != nil {
				return nil, err
			}
			s.hold(msgs)
			s.log.Info("recovered messages delivered to this consumer but not handed out", "messages", len(msgs))
		}
		if done {
			s.recovering, s.recoverFrom = false, "-"
		} else {
			s.recoverFrom = next
		}
		if len(msgs) > 0 {
			return msgs, nil
		}
	}
	return nil, nil
}

// loadPending reads the payloads of pending entries, in one round trip.
func (s *Source) loadPending(ctx context.Context, pending []redis.XPendingExt) ([]consumer.Message, error) {
	pipe := s.c.Pipeline()
	cmds := make([]*redis.Cmd, len(pending))
	for i, p := range pending {
		// Do, not XRange: XMessage keeps the fields in a map, losing a
		// field given twice (see message).
		cmds[i] = pipe.Do(ctx, "XRANGE", s.cfg.Stream, p.ID, p.ID)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, s.wrap("recover: xrange", err)
	}
	msgs := make([]consumer.Message, len(pending))
	for i, cmd := range cmds {
		e := entry{id: pending[i].ID, deleted: true}
		if r, _ := cmd.Val().([]any); len(r) == 1 {
			if x, _ := r[0].([]any); len(x) == 2 {
				fields, _ := x[1].([]any)
				e.fields, e.deleted = fieldsOf(fields), false
			}
		}
		msgs[i] = s.message(&e, max(1, int(pending[i].RetryCount)))
	}
	return msgs, nil
}

// claimPass runs when due: it forgets in-flight messages whose lease
// ended, removes dead consumers (once per scan of the pending list), and
// takes over up to claimCount entries idle longer than ClaimMinIdle,
// continuing the scan where the previous pass stopped. Entries trimmed
// from the stream while pending come back Lost. It hands out up to limit of
// them and keeps the rest for the next Fetch. If the pass filled a page, the
// next one runs at the next Fetch, so a backlog drains quickly; else after
// ClaimEvery.
func (s *Source) claimPass(ctx context.Context, limit int, now time.Time) ([]consumer.Message, error) {
	s.mu.Lock()
	for id, until := range s.inflight {
		if now.After(until) {
			delete(s.inflight, id)
		}
	}
	s.mu.Unlock()

	if s.claimFrom == "0-0" && s.cfg.DeadConsumerIdle > 0 {
		if err := s.removeDeadConsumers(ctx); err != nil {
			return nil, err
		}
	}

	res, err := lua.StreamClaim(ctx, s.c, s.g, s.cfg.ClaimMinIdle, s.claimFrom, claimCount)
	if err != nil {
		s.startRecovery() // claimed entries may sit in the pending list unseen
		return nil, s.wrap("", err)
	}
	s.claimFrom = res.Next
	s.nextClaim = now.Add(s.cfg.ClaimEvery)
	if res.Next != "0-0" && len(res.Claimed) >= claimCount {
		s.nextClaim = now
	}
	if len(res.Claimed) == 0 && len(res.Deleted) == 0 {
		return nil, nil
	}

	msgs := make([]consumer.Message, 0, len(res.Claimed)+len(res.Deleted))
	for i := range res.Claimed {
		c := &res.Claimed[i]
		e := entry{id: c.ID, fields: fieldsOf(c.Fields), deleted: c.Fields == nil}
		msgs = append(msgs, s.message(&e, max(2, int(c.Deliveries))))
	}
	for _, id := range res.Deleted {
		// Delivered before, handed out again now: at least 2 deliveries.
		msgs = append(msgs, consumer.Message{ID: id, Deliveries: 2, Time: idTime(id), Lost: true})
	}
	s.log.Info("claimed messages left idle by consumers", "claimed", len(res.Claimed), "lost", len(res.Deleted),
		"min_idle", s.cfg.ClaimMinIdle)
	s.hold(msgs)
	return s.handOut(msgs, limit), nil
}

// removeDeadConsumers deletes the group's consumers, other than this
// one, idle longer than DeadConsumerIdle and owning no pending entry.
// Each deletion re-checks both conditions atomically in a script. Only a
// missing group is an error; other failures are logged.
func (s *Source) removeDeadConsumers(ctx context.Context) error {
	cs, err := s.c.XInfoConsumers(ctx, s.cfg.Stream, s.cfg.Group).Result()
	if err != nil {
		err = s.wrap("xinfo consumers", err)
		if consumer.Classify(err) == consumer.Fatal {
			return err
		}
		s.log.Warn("listing the group's consumers failed; dead consumers are removed later", "err", err)
		return nil
	}
	for _, c := range cs {
		if c.Name == s.cfg.Consumer || c.Pending > 0 || c.Idle <= s.cfg.DeadConsumerIdle {
			continue
		}
		g := s.g
		g.Consumer = c.Name
		deleted, err := lua.StreamDeleteConsumer(ctx, s.c, g, s.cfg.DeadConsumerIdle)
		switch {
		case err != nil:
			s.log.Warn("removing a dead consumer failed", "dead_consumer", c.Name, "err", err)
		case deleted:
			s.log.Info("removed a dead consumer from the group", "dead_consumer", c.Name, "idle", c.Idle)
		}
	}
	return nil
}
