package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchUsage checks that 'indexer bench' refuses bad flags before it
// starts anything (the bench itself is tested, in a tiny configuration,
// by internal/bench).
func TestBenchUsage(t *testing.T) {
	out := filepath.Join(t.TempDir(), "bench.json")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--only", "e2e,everything", "--json", out}, `unknown part "everything"`},
		{[]string{"bench", "--only", "latency"}, "needs the e2e part"},
		{[]string{"bench", "--repeats", "-1"}, "must not be negative"},
		{[]string{"bench", "extra"}, "unexpected argument"},
	} {
		r := indexer(t, nil, "", tc.args...)
		if r.Code != exitUsage || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("indexer %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tc.args, " "), r.Code, r.Stderr, exitUsage, tc.want)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused run left %s behind (%v)", out, err)
	}
}
