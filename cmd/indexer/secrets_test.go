package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/streamindex/indexer/internal/testserver"
)

// sentinel is the password of every case of TestNoSecretInAnyOutput; no
// output of any command may contain it.
const sentinel = "Zq7SentinelPw"

// secretCase is one way of handing indexer a credential, with the flags it
// needs (a case is run with every command that has them all).
type secretCase struct {
	name string
	env  []string
	args []string
}

// TestNoSecretInAnyOutput runs every command of the registry, through
// the binary, into its error paths with a credential in each place one
// can be given (URLs in flags, INDEXER_* and a --config file, tokens,
// password files, malformed config lines), against absent servers,
// unreachable and invalid ports, URLs that do not parse and servers that
// refuse the credential, and checks that the sentinel password appears in
// no output: stdout, stderr, logs.
func TestNoSecretInAnyOutput(t *testing.T) {
	redisSrv := testserver.Redis(t)
	const redisPW = "the-right-one" // not the sentinel: lets the NATS cases reach NATS
	if err := redisSrv.Client(t).ConfigSet(t.Context(), "requirepass", redisPW).Err(); err != nil {
		t.Fatal(err)
	}
	redisOK := "redis://:" + redisPW + "@" + redisSrv.Addr() + "/0"
	natsAuth := startAuthNATS(t)
	closed := closedPort(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pwFile := write("password", sentinel+"\n")
	goodConfig := write("good.conf", "# a worker's file\nredis-url = redis://u:"+sentinel+"@127.0.0.1:"+closed+"/0\n"+
		"nats-token = \""+sentinel+"\"\nbatch-size = 500\nmetrics-addr = 127.0.0.1:0\nlog-format = json\n")
	malformed := write("malformed.conf", "batch-size = 10\nredis://u:"+sentinel+"@127.0.0.1:6379/0\n")
	unknownKey := write("unknown.conf", "redis-pasword = "+sentinel+"\n")
	natsAtRedis := []string{"--source", "nats", "--redis-url", redisOK}

	cases := []secretCase{
		{"redis refused", nil, []string{"--redis-url", "redis://u:" + sentinel + "@127.0.0.1:" + closed + "/0"}},
		{"redis bad escape", nil, []string{"--redis-url", "redis://u:" + sentinel + "%zz@127.0.0.1:" + closed + "/0"}},
		{"redis bad port", nil, []string{"--redis-url", "redis://u:" + sentinel + "@127.0.0.1:99999/0"}},
		{"redis token only", nil, []string{"--redis-url", "redis://" + sentinel + "@127.0.0.1:" + closed + "/0"}},
		{"redis wrong password", nil, []string{"--redis-url", "redis://:" + sentinel + "@" + redisSrv.Addr() + "/0"}},
		{"redis wrong user", nil, []string{"--redis-url", "redis://nobody:" + sentinel + "@" + redisSrv.Addr() + "/0"}},
		{"redis password file", nil, []string{"--redis-url", "redis://" + redisSrv.Addr() + "/0", "--redis-password-file", pwFile}},
		{"redis url from env", []string{"INDEXER_REDIS_URL=redis://:" + sentinel + "@127.0.0.1:" + closed + "/0"}, nil},
		{"config file", nil, []string{"--config", goodConfig}},
		{"config file from env", []string{"INDEXER_CONFIG=" + goodConfig}, nil},
		{"malformed config line", nil, []string{"--config", malformed}},
		{"unknown config key", nil, []string{"--config", unknownKey}},
		{"nats refused", nil, append([]string{"--nats-url", "nats://u:" + sentinel + "@127.0.0.1:" + closed}, natsAtRedis...)},
		{"nats bad escape", nil, append([]string{"--nats-url", "nats://u:" + sentinel + "%zz@127.0.0.1:" + closed}, natsAtRedis...)},
		{"nats bad port", nil, append([]string{"--nats-url", "nats://u:" + sentinel + "@127.0.0.1:99999"}, natsAtRedis...)},
		{"nats url list", nil, append([]string{"--nats-url", "nats://a:" + sentinel + "@127.0.0.1:" + closed + ",nats://b:" + sentinel + "@[::1"}, natsAtRedis...)},
		{"nats wrong password", nil, append([]string{"--nats-url", "nats://u:" + sentinel + "@" + natsAuth}, natsAtRedis...)},
		{"nats token in url", nil, append([]string{"--nats-url", "nats://" + sentinel + "@" + natsAuth}, natsAtRedis...)},
		{"nats token flag", nil, append([]string{"--nats-url", "nats://" + natsAuth, "--nats-token", sentinel}, natsAtRedis...)},
		{"nats token env", []string{"INDEXER_NATS_TOKEN=" + sentinel}, append([]string{"--nats-url", "nats://" + natsAuth}, natsAtRedis...)},
		{"nats url env", []string{"INDEXER_NATS_URL=nats://u:" + sentinel + "@127.0.0.1:" + closed}, natsAtRedis},
	}
	// Arguments that take each command past its own checks to the point
	// where it connects.
	commandArgs := map[string][]string{
		"get":        {"--database", "d", "--table", "t", "date=2024-01-15/hour=01/a.1.parquet"},
		"query":      {"--database", "d", "--table", "t"},
		"replay":     {"--from", "earliest"},
		"group":      {"reset", "--to", "earliest", "--dry-run"},
		"dlq":        {"list"},
		"plan":       {"next", "--database", "d", "--table", "t", "--layer", "default"},
		"publish":    {"--generate", "1", "--quiet"},
		"bench":      {"--only", "none-such"},
		"completion": {"bash"},
		"run":        {"--metrics-addr", ""},
	}
	event := `{"v":1,"id":"a","type":"file.created","time":1,"database":"db","table":"t","layer":"default","path":"date=2024-01-15/hour=01/a.1.parquet","size_bytes":1,"row_count":1,"chunk_time":1,"min_time":1,"max_time":2}` + "\n"

	type job struct {
		cmd, cas  string
		env, args []string
		r         testserver.Result
		err       error
	}
	var jobs []*job
	for _, c := range commands {
		fs := commandFlags(c)
		for _, sc := range cases {
			if !hasFlags(fs, sc.args) {
				continue
			}
			args := append(append([]string{c.name}, commandArgs[c.name]...), sc.args...)
			if fs.Lookup("log-level") != nil {
				args = append(args, "--log-level", "debug")
			}
			jobs = append(jobs, &job{cmd: c.name, cas: sc.name, env: sc.env, args: args})
		}
	}
	// Most runs wait on retries and time-outs, not the CPU: run 8 at once.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			j.r, j.err = runBounded(t.Context(), j.env, event, j.args...)
		}()
	}
	wg.Wait()
	runs, failures := len(jobs), 0
	for _, j := range jobs {
		if j.err != nil {
			t.Errorf("%s / %s: %v", j.cmd, j.cas, j.err)
			continue
		}
		if j.r.Code != 0 {
			failures++
		}
		for _, out := range []string{j.r.Stdout, j.r.Stderr} {
			if strings.Contains(out, sentinel) || strings.Contains(out, "Sentinel") {
				t.Errorf("%s / %s: the password is in the output (exit %d):\nstdout: %s\nstderr: %s", j.cmd, j.cas, j.r.Code, j.r.Stdout, j.r.Stderr)
			}
		}
	}
	t.Logf("%d runs of %d commands, %d failed as intended", runs, len(commands), failures)
	if failures < runs*3/4 {
		t.Errorf("only %d of %d runs failed: the cases no longer reach the error paths", failures, runs)
	}
}

// hasFlags reports whether fs defines every flag in args.
func hasFlags(fs *flag.FlagSet, args []string) bool {
	for _, a := range args {
		if strings.HasPrefix(a, "--") && fs.Lookup(strings.TrimPrefix(a, "--")) == nil {
			return false
		}
	}
	return true
}

// runBounded runs the binary like indexer(), but a worker that keeps
// retrying (a server that is down) is stopped with SIGTERM once it has
// logged its first warning or error.
func runBounded(ctx context.Context, env []string, stdin string, args ...string) (testserver.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	pr, pw, err := os.Pipe()
	if err != nil {
		return testserver.Result{}, err
	}
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return testserver.Result{}, err
	}
	pw.Close()
	var stderr bytes.Buffer
	signalled := false
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		stderr.WriteString(line + "\n")
		if !signalled && args[0] == "run" && (strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) ||
			strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR")) {
			signalled = true
			cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	pr.Close()
	err = cmd.Wait()
	r := testserver.Result{Stdout: stdout.String(), Stderr: stderr.String()}
	if ctx.Err() != nil {
		return r, fmt.Errorf("did not finish within 2 minutes: %+v", r)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		return r, err
	}
	return r, nil
}

// startAuthNATS starts a nats-server that wants user "u" with another
// password, and returns its host:port.
func startAuthNATS(t *testing.T) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		Username: "u", Password: "not-the-sentinel"})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s.Addr().String()
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return fmt.Sprint(port)
}
