package integration

// Negative controls: workers that are wrong on purpose (failpoint modes,
// compiled only into the failpoints build; see internal/failpoint and
// cmd/indexer/faulthooks_on.go), to show that the checker catches what the
// fault suite claims to rule out. Their summary lines are expected to show
// faults.

import (
	"testing"
	"time"
)

// A worker that acknowledges batches before applying them and dies
// before applying its second: the checker reports lost events, though the
// group has nothing pending.
func TestNegativeAckBeforeApply(t *testing.T) {
	bothSources(t, func(t *testing.T, source string) {
		f := newFaultEnv(t, source, fopts{})
		f.publish(eventsOf(10_000, 201, "events"))
		w := f.startWorker([]string{"INDEXER_FAILPOINT=ack-before-apply,before-apply-kill:2"})
		if code := w.exitCode(t, time.Minute); code != -1 {
			t.Fatalf("the wrong worker exited %d, want killed by its failpoint", code)
		}
		f.faults.Add(1)
		f.startWorker(nil)
		if !f.waitDrained(time.Minute) {
			t.FailNow()
		}
		v := f.check("negative-ack-before-apply-"+source, "lost")
		if v.Lost == 0 || v.Unknown != 0 {
			t.Errorf("the checker did not report the events acknowledged and never applied: %s", v)
		}
	})
}

// Workers that apply events with plain HSET/HDEL and HINCRBY (GigAPI's
// library's way, no per-path state), one of them killed after applying a
// batch, so the batch is applied twice: the checker reports counters
// drifting from the entries (files counted twice) and deletes without
// tombstones (lost).
func TestNegativeNoStateCheck(t *testing.T) {
	bothSources(t, func(t *testing.T, source string) {
		f := newFaultEnv(t, source, fopts{})
		f.publish(eventsOf(10_000, 202, "events"))
		w := f.startWorker([]string{"INDEXER_FAILPOINT=no-state-check,after-apply-kill:2"})
		if code := w.exitCode(t, time.Minute); code != -1 {
			t.Fatalf("the wrong worker exited %d, want killed by its failpoint", code)
		}
		f.faults.Add(1)
		f.startWorker([]string{"INDEXER_FAILPOINT=no-state-check"})
		if !f.waitDrained(time.Minute) {
			t.FailNow()
		}
		v := f.check("negative-no-state-check-"+source, "lost,drift")
		if v.Drift == 0 || v.Lost == 0 {
			t.Errorf("the checker did not report the naive worker's double counts and missing tombstones: %s", v)
		}
	})
}
