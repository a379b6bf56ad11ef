//go:build !failpoints

package failpoint

// Inject marks a step; without the failpoints tag it does nothing.
func Inject(step string) {}

// Active reports whether a mode is on; without the failpoints tag never.
func Active(mode string) bool { return false }

// Enabled reports whether failpoints are compiled in.
const Enabled = false
