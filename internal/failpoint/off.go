//go:build !failpoints

package failpoint

// Inject marks a step; without the failpoints tag it does nothing.
func Inject(step string) {}

// Enabled reports whether failpoints are compiled in.
const Enabled = false
