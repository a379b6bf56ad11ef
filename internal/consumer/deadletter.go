package consumer

import (
	"fmt"
	"sync"
)

// deadLetter makes the dead letter of m: its payload cut to
// DeadLetterMaxBytes, with the whole payload's size and digest, so one
// oversized message cannot fill the dead-letter destination.
func (r *Runner) deadLetter(m *Message, reason string) DeadLetter {
	d := DeadLetter{Message: *m, Reason: reason, Size: len(m.Data), SHA256: digest(m.Data)}
	if len(d.Data) > r.cfg.DeadLetterMaxBytes {
		d.Data = d.Data[:r.cfg.DeadLetterMaxBytes:r.cfg.DeadLetterMaxBytes]
	}
	return d
}

// maxDeliverReason says why m goes to the dead-letter destination after
// too many deliveries, with the last failure this worker saw for it.
func (r *Runner) maxDeliverReason(m *Message) string {
	reason := fmt.Sprintf("delivered %d times without being applied (more than --max-deliver %d)", m.Deliveries, r.cfg.MaxDeliver)
	if last, ok := r.failures.take(m.ID); ok {
		return reason + "; last error: " + last
	}
	return reason + "; this worker never failed it (its earlier deliveries went to other workers, or to this one before it restarted, " +
		"or their workers were stopped before they finished): look for msg_id " + m.ID + " in the workers' logs"
}

// failureMemory is how many messages' last failures a worker remembers.
const failureMemory = 10_000

// failures remembers the last error this worker saw for each message it
// could not apply or acknowledge (left for redelivery), so the message's
// dead letter can say why once it was delivered too often. Bounded: past
// failureMemory messages the oldest are forgotten. Safe for concurrent use.
type failures struct {
	mu    sync.Mutex
	last  map[string]string
	order []string // ids in the order first recorded, for eviction
}

// record remembers err as the last failure of msgs.
func (f *failures) record(msgs []Message, err error) {
	if len(msgs) == 0 || err == nil {
		return
	}
	text := err.Error()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.last == nil {
		f.last = make(map[string]string)
	}
	for i := range msgs {
		id := msgs[i].ID
		if _, ok := f.last[id]; !ok {
			f.order = append(f.order, id)
		}
		f.last[id] = text
	}
	for len(f.last) > failureMemory && len(f.order) > 0 {
		delete(f.last, f.order[0])
		f.order = f.order[1:]
	}
	if len(f.order) > 2*failureMemory { // ids forgotten by forget or take
		kept := f.order[:0:0]
		for _, id := range f.order {
			if _, ok := f.last[id]; ok {
				kept = append(kept, id)
			}
		}
		f.order = kept
	}
}

// take returns the last failure of the message id and forgets it.
func (f *failures) take(id string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.last[id]
	delete(f.last, id)
	return s, ok
}

// forget forgets msgs (acknowledged, or dead-lettered).
func (f *failures) forget(msgs []Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.last) == 0 {
		return
	}
	for i := range msgs {
		delete(f.last, msgs[i].ID)
	}
}
