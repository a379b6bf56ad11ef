package lua

import (
	_ "embed"
	"strings"
)

//go:embed shared.lua
var sharedSrc string

// withShared returns src with shared.lua's functions (size_rows, idname)
// inserted after its first line (the #!lua shebang, which must stay
// first), so scripts share them instead of copying them.
func withShared(src string) string {
	first, rest, _ := strings.Cut(src, "\n")
	return first + "\n" + sharedSrc + rest
}
