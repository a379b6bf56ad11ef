package lua

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamindex/indexer/internal/testserver"
)

// TestLoad: every script compiles, Load loads the index's and LoadStream
// the stream's, and every .lua file of the package (but the shared
// functions) is in one of the two.
func TestLoad(t *testing.T) {
	files, err := filepath.Glob("*.lua")
	if err != nil {
		t.Fatal(err)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return f == "shared.lua" }) // prepended to others (withShared)
	var names []string
	for _, set := range []map[string]*redis.Script{indexScripts, streamScripts} {
		for n := range set {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	if !slices.Equal(files, names) {
		t.Errorf("scripts loaded %v, want every .lua file %v", names, files)
	}

	c := testserver.Redis(t).Client(t)
	ctx := t.Context()
	loaded := func(set map[string]*redis.Script) bool {
		for _, s := range set {
			if ok, err := s.Exists(ctx, c).Result(); err != nil || !ok[0] {
				return false
			}
		}
		return true
	}
	if err := Load(ctx, c); err != nil {
		t.Fatal(err)
	}
	if !loaded(indexScripts) || loaded(streamScripts) {
		t.Error("Load must load the index's scripts and only those")
	}
	if err := LoadStream(ctx, c); err != nil {
		t.Fatal(err)
	}
	if !loaded(streamScripts) {
		t.Error("LoadStream did not load the stream's scripts")
	}
}
