// Package buildinfo says which build of indexer is running: its version,
// the source revision it was built from and the Go version, for
// 'indexer --version' and the indexer_build_info metric.
//
// The version and revision come from the linker when the build sets them
// (the Makefile and the Dockerfile do):
//
//	go build -ldflags "-X github.com/streamindex/indexer/internal/buildinfo.version=v1.2.3 \
//	    -X github.com/streamindex/indexer/internal/buildinfo.revision=0123abc" ./cmd/indexer
//
// and otherwise from what the Go toolchain stamps into every binary built
// inside a Git checkout (runtime/debug.ReadBuildInfo: the module version and
// the vcs.revision and vcs.modified settings).
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
)

// Set with -ldflags "-X …"; empty means "ask the build information".
var (
	version  string
	revision string
)

// Info identifies a build.
type Info struct {
	// Version is the release ("v1.2.3"), the pseudo-version the toolchain
	// derived from the checkout, or "devel" when nothing says.
	Version string
	// Revision is the source revision (a Git commit, shortened to 12
	// characters), with "-dirty" when the checkout had uncommitted
	// changes; "unknown" when nothing says.
	Revision string
	// GoVersion is the Go toolchain that built the binary ("go1.26.0").
	GoVersion string
}

// Get returns the running binary's build information. It is safe for
// concurrent use and cheap after the first call.
func Get() Info { return get() }

var get = sync.OnceValue(func() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(version, revision, bi)
})

// resolve prefers the linker's values, then the build information.
func resolve(ldVersion, ldRevision string, bi *debug.BuildInfo) Info {
	info := Info{Version: ldVersion, Revision: ldRevision, GoVersion: runtime.Version()}
	if bi != nil {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		if info.Revision == "" {
			var rev, modified string
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value
				}
			}
			if len(rev) > 12 {
				rev = rev[:12]
			}
			if rev != "" && modified == "true" {
				rev += "-dirty"
			}
			info.Revision = rev
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	if info.Revision == "" {
		info.Revision = "unknown"
	}
	return info
}

// String is the one line 'indexer --version' prints:
// "indexer v1.2.3 (revision 0123456789ab, go1.26.0 linux/amd64)".
func (i Info) String() string {
	return fmt.Sprintf("indexer %s (revision %s, %s %s/%s)", i.Version, i.Revision, i.GoVersion, runtime.GOOS, runtime.GOARCH)
}
