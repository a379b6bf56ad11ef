package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/streamindex/indexer/internal/testserver"
)

// writeFile writes a file into a test's temporary directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVersionAndHelp(t *testing.T) {
	version := regexp.MustCompile(`^indexer \S+ \(revision \S+, go1\.\d+\S* \S+/\S+\)$`)
	for _, arg := range []string{"--version", "version"} {
		r := indexer(t, nil, "", arg)
		if r.Code != exitOK || !version.MatchString(strings.TrimSpace(r.Stdout)) {
			t.Errorf("%s: %+v", arg, r)
		}
	}
	v := strings.TrimSpace(indexer(t, nil, "", "--version").Stdout)
	if r := indexer(t, nil, "", "--help"); r.Code != exitOK || !strings.Contains(r.Stdout, v) || !strings.Contains(r.Stdout, "Commands:") {
		t.Errorf("--help lacks the version %q: %+v", v, r)
	}
	r := indexer(t, nil, "", "help", "run")
	if r.Code != exitOK || !strings.HasPrefix(r.Stdout, "Usage: indexer run") || !strings.Contains(r.Stdout, "--batch-size") {
		t.Errorf("help run: %+v", r)
	}
	if r := indexer(t, nil, "", "help", "nope"); r.Code != exitUsage || !strings.Contains(r.Stderr, `unknown command "nope"`) {
		t.Errorf("help nope: %+v", r)
	}
}

// TestOneConfigServesEveryCommand: the workers' config file, with keys
// only 'run' knows, serves every admin command; a key no command knows is
// an error naming the file and line; the command line stays strict.
func TestOneConfigServesEveryCommand(t *testing.T) {
	env, _ := redisEnv(t)
	cfg := writeFile(t, "indexer.conf", "# the workers' file\nmetrics-addr = 127.0.0.1:0\nbatch-size = 500\n"+
		"claim-min-idle = 2m\nlog-format = json\nlinger = 0\nembedded-nats-listen = 127.0.0.1:0\nformat = json\n")
	for _, args := range [][]string{
		{"setup"},
		{"publish", "--generate", "10", "--quiet"},
		{"status"},
		{"stats"},
		{"check"},
		{"query", "--database", "demo", "--table", "events"},
		{"dlq", "list"},
		{"gc", "--dry-run"},
		{"replay", "--from", "earliest", "--quiet"},
		{"group", "reset", "--to", "earliest", "--dry-run"},
		{"plan", "publish"},
	} {
		if r := indexer(t, env, "", append(args, "--config", cfg)...); r.Code != exitOK {
			t.Errorf("%v with the workers' config: %+v", args, r)
		}
	}
	// The same through INDEXER_CONFIG.
	if r := indexer(t, append(env, "INDEXER_CONFIG="+cfg), "", "stats"); r.Code != exitOK {
		t.Errorf("stats with INDEXER_CONFIG: %+v", r)
	}

	bad := writeFile(t, "bad.conf", "batch-size = 5\n\n# comment\nbatch-sise = 6\n")
	r := indexer(t, env, "", "stats", "--config", bad)
	if r.Code != exitUsage || !strings.Contains(r.Stderr, bad+":4:") || !strings.Contains(r.Stderr, `"batch-sise"`) {
		t.Errorf("unknown key: %+v", r)
	}
	dup := writeFile(t, "dup.conf", "batch-size = 5\nbatch-size = 6\n")
	if r := indexer(t, env, "", "run", "--config", dup); r.Code != exitUsage || !strings.Contains(r.Stderr, dup+":2: batch-size is set again (first on line 1)") {
		t.Errorf("duplicate key: %+v", r)
	}
	malformed := writeFile(t, "malformed.conf", "batch-size = 5\nredis://u:"+sentinel+"@h:6379/0\n")
	r = indexer(t, env, "", "stats", "--config", malformed)
	if r.Code != exitUsage || !strings.Contains(r.Stderr, malformed+":2: not a 'flag = value' line") || strings.Contains(r.Stderr, sentinel) {
		t.Errorf("malformed line: %+v", r)
	}
	badValue := writeFile(t, "value.conf", "claim-min-idle = soon\n")
	if r := indexer(t, env, "", "run", "--config", badValue); r.Code != exitUsage || !strings.Contains(r.Stderr, badValue+":1: claim-min-idle") {
		t.Errorf("bad value: %+v", r)
	}
	// The command line is strict: a flag of another command is an error.
	if r := indexer(t, env, "", "stats", "--batch-size", "5"); r.Code != exitUsage {
		t.Errorf("stats --batch-size: %+v", r)
	}
}

// TestZeroValuesAndOneLineErrors: flags refuse values that make no sense,
// from the command line, the environment or a file; --linger 0 is
// honoured; a worker's JSON log shows durations as Go durations; a missing
// group or stream stops the worker with one log line that names the fix,
// and nothing else.
func TestZeroValuesAndOneLineErrors(t *testing.T) {
	env, _ := redisEnv(t)
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"run", "--batch-size", "0"}, "must be at least 1"},
		{[]string{"INDEXER_MAX_DELIVER=0"}, []string{"run"}, "INDEXER_MAX_DELIVER=\"0\": must be at least 1"},
		{nil, []string{"run", "--claim-min-idle", "0s"}, "must be more than 0"},
		{nil, []string{"run", "--linger", "-1ms"}, "must not be negative"},
		{nil, []string{"setup", "--replicas", "-1"}, "must be at least 0"},
		{nil, []string{"setup", "--duplicate-window", "0"}, "must be more than 0"},
		{nil, []string{"replay", "--batch-size", "0", "--from", "earliest"}, "must be at least 1"},
	} {
		r := indexer(t, append(env, tc.env...), "", tc.args...)
		if r.Code != exitUsage || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("%v %v: %+v, want exit 2 and %q", tc.env, tc.args, r, tc.want)
		}
	}

	// No group: one JSON error line after the start line, naming the fix.
	r := indexer(t, env, "", "run", "--linger", "0", "--metrics-addr", "", "--log-format", "json")
	lines := jsonLines(t, r.Stderr)
	if r.Code != exitFail || len(lines) != 2 {
		t.Fatalf("run without a group: %+v", r)
	}
	if lines[0]["msg"] != "worker started" || lines[0]["linger"] != "0s" {
		t.Errorf("start line %v: want linger \"0s\" (no lingering, as a duration string)", lines[0])
	}
	if lines[1]["level"] != "ERROR" || !strings.Contains(lines[1]["err"].(string), "NOGROUP") ||
		!strings.Contains(lines[1]["err"].(string), "'indexer setup --source redis --stream idx:events --group indexer'") {
		t.Errorf("stop line %v", lines[1])
	}

	// NATS, no stream: the same.
	ns := testserver.NATS(t)
	r = indexer(t, env, "", "run", "--source", "nats", "--nats-url", ns.ClientURL(), "--metrics-addr", "", "--log-format", "json")
	lines = jsonLines(t, r.Stderr)
	errors := 0
	for _, l := range lines {
		if l["level"] == "ERROR" {
			errors++
			if !strings.Contains(l["err"].(string), `stream "IDX_EVENTS" does not exist`) || !strings.Contains(l["err"].(string), "indexer setup --source nats") {
				t.Errorf("error line %v", l)
			}
		}
	}
	if r.Code != exitFail || errors != 1 {
		t.Errorf("run without a NATS stream: %d error lines: %+v", errors, r)
	}
	// An operator command: one plain line.
	r = indexer(t, env, "", "status")
	if r.Code != exitFail || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 || !strings.Contains(r.Stderr, "does not exist") {
		t.Errorf("status without a stream: %+v", r)
	}
}

// jsonLines parses every line of a JSON log; a line that is not JSON fails
// the test.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON log line: %q", line)
		}
		out = append(out, m)
	}
	return out
}

// TestSetupNATSReportsWhatItDid: setup says which of the streams and the
// consumer it created and which it found.
func TestSetupNATSReportsWhatItDid(t *testing.T) {
	ns := testserver.NATS(t)
	env := []string{"INDEXER_NATS_URL=" + ns.ClientURL(), "INDEXER_SOURCE=nats"}
	r := indexer(t, env, "", "setup")
	want := `created stream "IDX_EVENTS" (subjects idx.events.>), dead-letter stream "IDX_DLQ" (subjects idx.dlq.>), durable consumer "indexer" and the stream of its max-deliveries advisories`
	if r.Code != exitOK || strings.TrimSpace(r.Stdout) != want {
		t.Fatalf("first setup: %+v\nwant %s", r, want)
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	if err := js.DeleteConsumer(t.Context(), "IDX_EVENTS", "indexer"); err != nil {
		t.Fatal(err)
	}
	r = indexer(t, env, "", "setup")
	want = `created durable consumer "indexer"; stream "IDX_EVENTS" (subjects idx.events.>), dead-letter stream "IDX_DLQ" (subjects idx.dlq.>) and the stream of its max-deliveries advisories exist with a compatible configuration, left unchanged`
	if r.Code != exitOK || strings.TrimSpace(r.Stdout) != want {
		t.Fatalf("setup with only the consumer missing: %+v\nwant %s", r, want)
	}
	r = indexer(t, env, "", "setup")
	if r.Code != exitOK || strings.Contains(r.Stdout, "created") || !strings.Contains(r.Stdout, "left unchanged") {
		t.Fatalf("setup with everything there: %+v", r)
	}
}

// TestNATSPersistModeAndNoMsgID: setup --persist-mode async creates the
// events stream with asynchronous persistence (and refuses an unknown
// mode); publish --no-msg-id sends events without Nats-Msg-Id, so the
// stream keeps a republished event twice.
func TestNATSPersistModeAndNoMsgID(t *testing.T) {
	ns := testserver.NATS(t)
	env := []string{"INDEXER_NATS_URL=" + ns.ClientURL(), "INDEXER_SOURCE=nats"}
	if r := indexer(t, env, "", "setup", "--persist-mode", "fast"); r.Code != exitUsage || !strings.Contains(r.Stderr, "use default or async") {
		t.Fatalf("setup --persist-mode fast: %+v", r)
	}
	if r := indexer(t, append(env, "INDEXER_PERSIST_MODE=async"), "", "setup"); r.Code != exitOK {
		t.Fatalf("setup with INDEXER_PERSIST_MODE=async: %+v", r)
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	s, err := js.Stream(t.Context(), "IDX_EVENTS")
	if err != nil || s.CachedInfo().Config.PersistMode != natsjs.AsyncPersistMode {
		t.Fatalf("events stream after setup --persist-mode async: %v, %+v", err, s)
	}
	if r := indexer(t, env, "", "setup"); r.Code != exitFail || !strings.Contains(r.Stderr, "persist_mode is async, want default") {
		t.Errorf("setup without --persist-mode on the async stream: %+v", r)
	}
	for _, c := range []struct {
		flags []string
		want  uint64
	}{{nil, 20}, {[]string{"--no-msg-id"}, 40}} {
		if err := s.Purge(t.Context()); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"publish", "--generate", "20", "--duplicate-ratio", "1", "--quiet"}, c.flags...)
		if r := indexer(t, env, "", args...); r.Code != exitOK {
			t.Fatalf("%v: %+v", args, r)
		}
		info, err := s.Info(t.Context())
		if err != nil || info.State.Msgs != c.want {
			t.Errorf("%v: the stream holds %+v messages (%v), want %d", args, info.State.Msgs, err, c.want)
		}
	}
}

// TestCompletion: the bash and zsh scripts are valid, and completing a
// command, a flag and a flag's value through them gives the registry's
// names.
func TestCompletion(t *testing.T) {
	path := filepath.Dir(binary) + string(os.PathListSeparator) + os.Getenv("PATH")
	bash := `source <(indexer completion bash)
t() { COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; COMPREPLY=(); _indexer; echo "${COMPREPLY[*]}"; }
t "indexer ru"; t "indexer run --batch-s"; t "indexer run --source "; t "indexer query --format=nd"; t "indexer dlq "
complete -p indexer`
	cmd := exec.Command("bash", "-c", bash)
	cmd.Env = append(os.Environ(), "PATH="+path)
	out, err := cmd.CombinedOutput()
	want := "run\n--batch-size\nredis nats\nndjson\nlist requeue purge\ncomplete -F _indexer indexer\n"
	if err != nil || string(out) != want {
		t.Errorf("bash completion: %v\n%s\nwant\n%s", err, out, want)
	}
	cmd = exec.Command("bash", "-c", "indexer completion bash | bash -n")
	cmd.Env = append(os.Environ(), "PATH="+path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("bash -n: %v\n%s", err, out)
	}

	if _, err := exec.LookPath("zsh"); err != nil {
		t.Fatal("zsh not found: install it with 'sudo apt-get install -y zsh' (.ci/run does); tests never skip")
	}
	// Outside the line editor compadd and _files cannot run: stand-ins
	// print what the script hands them.
	zsh := `compdef() { print -r -- "compdef $*"; }
source <(indexer completion zsh)
compadd() { shift 2; print -r -- "$*"; }
_files() { print -r -- "_files $*"; }
words=(indexer ru); CURRENT=2; _indexer
words=(indexer run --source ""); CURRENT=4; _indexer
words=(indexer run --config ""); CURRENT=4; _indexer`
	cmd = exec.Command("zsh", "-f", "-c", zsh)
	cmd.Env = append(os.Environ(), "PATH="+path)
	out, err = cmd.CombinedOutput()
	if want := "compdef _indexer indexer\nrun\nredis nats\n_files \n"; err != nil || string(out) != want {
		t.Errorf("zsh completion: %v\n%s\nwant\n%s", err, out, want)
	}
	cmd = exec.Command("zsh", "-f", "-c", "indexer completion zsh > $TMPDIR/_indexer && zsh -n $TMPDIR/_indexer")
	cmd.Env = append(os.Environ(), "PATH="+path, "TMPDIR="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("zsh -n: %v\n%s", err, out)
	}
	if r := indexer(t, nil, "", "completion", "fish"); r.Code != exitUsage {
		t.Errorf("completion fish: %+v", r)
	}
}
