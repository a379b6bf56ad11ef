// Package failpoint lets fault-injection tests crash or stall a worker at
// a chosen step. It does nothing unless the binary is built with the
// "failpoints" build tag; production builds compile every call away.
//
// With the tag, INDEXER_FAILPOINT=<name>[:<n>] makes the n-th (default
// first) call of Inject(<name>) act: names ending in "-kill" send SIGKILL
// to the process; names ending in "-stall" block for INDEXER_FAILPOINT_STALL
// (default 5s). Several failpoints are separated by commas.
package failpoint

// The steps the worker marks.
const (
	// AfterFetch: a batch was read and nothing was done with it.
	AfterFetch = "after-fetch"
	// AfterApply: the batch was applied to the index, not yet acknowledged.
	AfterApply = "after-apply"
	// MidDeadLetter: dead letters were published (NATS), not yet
	// acknowledged/terminated.
	MidDeadLetter = "mid-dead-letter"
	// BeforeApply: about to apply the batch.
	BeforeApply = "before-apply"
	// GCLocked: tombstone collection took its lock and has not collected
	// yet.
	GCLocked = "gc-locked"
)
