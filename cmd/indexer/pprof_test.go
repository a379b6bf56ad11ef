package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServedEndpointsHoldNoSecret: a worker whose Redis URL carries a
// password, with profiling on: nothing it serves — /metrics, /healthz,
// /readyz, every profile under /debug/pprof/ (decompressed), the refused
// /debug/pprof/cmdline — nor its log contains the password.
func TestServedEndpointsHoldNoSecret(t *testing.T) {
	_, srv := redisEnv(t)
	srv.Client(t).ConfigSet(t.Context(), "requirepass", sentinel)
	env := []string{"INDEXER_REDIS_URL=redis://:" + sentinel + "@" + srv.Addr() + "/0"}
	if r := indexer(t, env, "", "setup", "--source", "redis"); r.Code != exitOK {
		t.Fatalf("setup: %+v", r)
	}
	// The password on the command line too, where /debug/pprof/cmdline
	// would show it.
	cmd := exec.Command(binary, "run", "--source", "redis", "--redis-url", "redis://:"+sentinel+"@"+srv.Addr()+"/0",
		"--metrics-addr", "127.0.0.1:0", "--pprof", "127.0.0.1:0", "--log-format", "json", "--gc-interval", "0")
	var log bytes.Buffer
	pr, pw := io.Pipe()
	cmd.Stderr = io.MultiWriter(&log, pw)
	cmd.Stdout = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		pw.Close()
		if strings.Contains(log.String(), sentinel) {
			t.Errorf("the worker's log holds the password:\n%s", log.String())
		}
	}()
	// The two addresses, from the log.
	addrs := map[string]string{}
	sc := bufio.NewScanner(pr)
	for len(addrs) < 2 && sc.Scan() {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Addr != "" {
			addrs[rec.Msg] = rec.Addr
		}
	}
	go io.Copy(io.Discard, pr)
	metrics, pprof := addrs["serving /metrics, /healthz, /readyz"], addrs["serving Go profiles under /debug/pprof/"]
	if metrics == "" || pprof == "" {
		t.Fatalf("addresses not logged: %v\n%s", addrs, log.String())
	}

	get := func(url string) (int, []byte) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		if zr, err := gzip.NewReader(bytes.NewReader(body)); err == nil { // profiles in protobuf are gzipped
			if plain, err := io.ReadAll(zr); err == nil {
				body = plain
			}
		}
		return resp.StatusCode, body
	}
	// Wait until the worker is ready: it has connected with the password.
	deadline := time.Now().Add(30 * time.Second)
	for code, _ := get("http://" + metrics + "/readyz"); code != http.StatusOK; code, _ = get("http://" + metrics + "/readyz") {
		if time.Now().After(deadline) {
			t.Fatalf("worker never ready:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	urls := []string{"http://" + metrics + "/metrics", "http://" + metrics + "/healthz", "http://" + metrics + "/readyz",
		"http://" + metrics + "/debug/pprof/cmdline"}
	p := "http://" + pprof + "/debug/pprof/"
	urls = append(urls, p, p+"cmdline", p+"symbol", p+"profile?seconds=1", p+"trace?seconds=1")
	for _, name := range []string{"goroutine", "heap", "allocs", "block", "mutex", "threadcreate"} {
		for _, debug := range []string{"0", "1", "2"} {
			urls = append(urls, p+name+"?debug="+debug)
		}
	}
	for _, u := range urls {
		code, body := get(u)
		if bytes.Contains(body, []byte(sentinel)) {
			t.Errorf("%s (%d) holds the password", u, code)
		}
		switch {
		case strings.HasSuffix(u, "/cmdline"):
			if code != http.StatusNotFound {
				t.Errorf("%s = %d, want 404", u, code)
			}
		case strings.HasPrefix(u, "http://"+metrics+"/debug/"):
			if code != http.StatusNotFound {
				t.Errorf("%s = %d: no profiles on the metrics address", u, code)
			}
		case code != http.StatusOK:
			t.Errorf("%s = %d", u, code)
		}
	}
}

// TestPprofLoopbackOnly: --pprof on another address than loopback is a
// usage error unless --pprof-remote.
func TestPprofLoopbackOnly(t *testing.T) {
	for _, addr := range []string{":6060", "0.0.0.0:6060", "[::]:6060"} {
		r := indexer(t, nil, "", "run", "--source", "redis", "--pprof", addr)
		if r.Code != exitUsage || !strings.Contains(r.Stderr, "--pprof-remote") || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
			t.Errorf("--pprof %s: %+v, want exit 2 naming --pprof-remote in one line", addr, r)
		}
	}
}
