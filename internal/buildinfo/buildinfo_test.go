package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	vcs := &debug.BuildInfo{
		Main: debug.Module{Version: "v0.0.0-20240115140000-0123456789ab+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	for _, tc := range []struct {
		name         string
		ldVer, ldRev string
		bi           *debug.BuildInfo
		wantV, wantR string
	}{
		{"linker wins", "v1.2.3", "abc", vcs, "v1.2.3", "abc"},
		{"from vcs", "", "", vcs, "v0.0.0-20240115140000-0123456789ab+dirty", "0123456789ab-dirty"},
		{"clean checkout", "", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "feed"}, {Key: "vcs.modified", Value: "false"}}}, "devel", "feed"},
		{"nothing known", "", "", nil, "devel", "unknown"},
	} {
		got := resolve(tc.ldVer, tc.ldRev, tc.bi)
		if got.Version != tc.wantV || got.Revision != tc.wantR || got.GoVersion != runtime.Version() {
			t.Errorf("%s: %+v, want version %q revision %q", tc.name, got, tc.wantV, tc.wantR)
		}
	}
}

func TestString(t *testing.T) {
	s := Info{Version: "v1.2.3", Revision: "0123456789ab", GoVersion: "go1.26.0"}.String()
	if !strings.HasPrefix(s, "indexer v1.2.3 (revision 0123456789ab, go1.26.0 ") {
		t.Errorf("%q", s)
	}
}
