// Package failpoint lets fault-injection tests crash or stall a worker at
// a chosen step. It does nothing unless the binary is built with the
// "failpoints" build tag; production builds compile every call away.
//
// With the tag, INDEXER_FAILPOINT=<name>[:<n>] makes the n-th (default
// first) call of Inject(<name>) act: names ending in "-kill" send SIGKILL
// to the process; names ending in "-stall" block for INDEXER_FAILPOINT_STALL
// (default 5s). Several failpoints are separated by commas.
//
// INDEXER_FAILPOINT may also name modes (no suffix, no count), which
// Active reports: the negative controls AckBeforeApply and NoStateCheck,
// which make the worker wrong on purpose so that the fault-injection suite
// can show that its checker catches a worker that loses or corrupts
// events.
package failpoint

// The steps the worker marks.
const (
	// AfterFetch: a batch was read and nothing was done with it.
	AfterFetch = "after-fetch"
	// AfterApply: the batch was applied to the index, not yet acknowledged.
	AfterApply = "after-apply"
	// MidDeadLetter: dead letters were published (NATS), not yet
	// acknowledged/terminated. (Redis moves and acknowledges dead letters
	// in one atomic script: there is no step in between.)
	MidDeadLetter = "mid-dead-letter"
	// BeforeApply: about to apply the batch.
	BeforeApply = "before-apply"
	// BetweenParts: in the cluster layout, one Part's patch_index call of a
	// batch succeeded and the next Part's has not started.
	BetweenParts = "between-parts"
	// GCLocked: tombstone collection took its lock and has not collected
	// yet.
	GCLocked = "gc-locked"
)

// The modes, negative controls only: a worker running with one of them is
// wrong by design.
const (
	// AckBeforeApply: the worker acknowledges every message as soon as it
	// fetched it, before applying it (combine it with before-apply-kill to
	// lose the batch).
	AckBeforeApply = "ack-before-apply"
	// NoStateCheck: the worker applies events with plain HSET/HDEL and
	// HINCRBY, as GigAPI's own library does, instead of patch_index: no
	// per-path state, so redeliveries count files twice and deletes do
	// not stick.
	NoStateCheck = "no-state-check"
)
