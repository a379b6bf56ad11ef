package buildinfo

import (
	"runtime"
	"testing"
)

func TestGet(t *testing.T) {
	i := Get()
	if i.GoVersion != runtime.Version() || i.Version == "" || i.Revision == "" {
		t.Errorf("Get() = %+v", i)
	}
	defer func(v string) { Version = v }(Version)
	Version = "v1.2.3"
	if v := Get().Version; v != "v1.2.3" {
		t.Errorf("Version set at link time: Get().Version = %q", v)
	}
}
