// Package buildinfo tells which build of indexer is running: its version,
// the VCS revision it was built from, and the Go version that built it.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Version is the release version. Release builds set it at link time:
//
//	go build -ldflags "-X github.com/streamindex/indexer/internal/buildinfo.Version=v1.2.3" ./cmd/indexer
//
// When unset, Get reports the module version the binary was built as
// ("(devel)" for a build from a work tree).
var Version string

// Info describes a build.
type Info struct {
	// Version is the release version, or the module version, or "unknown".
	Version string
	// Revision is the VCS revision (with "-dirty" for a modified work
	// tree), or "unknown" when the build did not record it.
	Revision string
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string
}

// Get returns the running binary's build information.
func Get() Info {
	info := Info{Version: Version, Revision: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		if info.Version == "" {
			info.Version = "unknown"
		}
		return info
	}
	if info.Version == "" {
		info.Version = bi.Main.Version
	}
	if info.Version == "" {
		info.Version = "unknown"
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && info.Revision != "unknown" {
		info.Revision += "-dirty"
	}
	return info
}
