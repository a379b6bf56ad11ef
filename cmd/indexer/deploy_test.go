package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The packaging files live at the repository root, two levels up.
const repoRoot = "../.."

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, …
	args string
	line int
}

// parseDockerfile reads the instructions of a Dockerfile (comments and
// parser directives skipped, backslash continuations joined).
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(raw), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasPrefix(trimmed, "#") { // a comment inside a continuation
			continue
		}
		if s, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start})
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatalf("%s: unfinished continuation at the end", path)
	}
	return out
}

// TestDockerfile checks what the image promises without a Docker engine:
// a multi-stage build of a static binary, a final stage without a shell
// that runs as a non-root user, indexer as the entry point, sources that
// exist, and -X flags that name real variables.
func TestDockerfile(t *testing.T) {
	known := map[string]bool{"FROM": true, "RUN": true, "COPY": true, "ARG": true, "ENV": true, "WORKDIR": true, "USER": true,
		"EXPOSE": true, "VOLUME": true, "ENTRYPOINT": true, "CMD": true, "LABEL": true, "HEALTHCHECK": true, "ADD": true}
	var stages [][]instruction
	for _, in := range parseDockerfile(t, filepath.Join(repoRoot, "Dockerfile")) {
		if !known[in.cmd] {
			t.Errorf("Dockerfile:%d: unknown instruction %s", in.line, in.cmd)
		}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Errorf("Dockerfile:%d: %s before the first FROM", in.line, in.cmd)
			}
			continue
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	if !regexp.MustCompile(`^golang:\S+ AS build$`).MatchString(build[0].args) {
		t.Errorf("build stage FROM %q, want golang:… AS build", build[0].args)
	}
	text := func(stage []instruction) string {
		var b strings.Builder
		for _, in := range stage {
			b.WriteString(in.cmd + " " + in.args + "\n")
		}
		return b.String()
	}
	bt := text(build)
	for _, want := range []string{"CGO_ENABLED=0", "go build", "./cmd/indexer", "-o /out/indexer"} {
		if !strings.Contains(bt, want) {
			t.Errorf("build stage lacks %q", want)
		}
	}
	for _, in := range build {
		if in.cmd == "COPY" {
			for _, src := range strings.Fields(in.args)[:len(strings.Fields(in.args))-1] {
				if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil && !strings.HasPrefix(src, "--") {
					t.Errorf("Dockerfile:%d: COPY source %s: %v", in.line, src, err)
				}
			}
		}
	}
	checkLdflags(t, "Dockerfile", bt)

	if base := final[0].args; !strings.HasPrefix(base, "gcr.io/distroless/static") && base != "scratch" {
		t.Errorf("runtime stage FROM %s: want distroless/static or scratch (no shell, CA certificates)", base)
	}
	var user, entry string
	for _, in := range final {
		switch in.cmd {
		case "RUN":
			t.Errorf("Dockerfile:%d: RUN in the runtime stage: it has no shell", in.line)
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entry = in.args
		case "COPY":
			if !strings.Contains(in.args, "--from=build") {
				t.Errorf("Dockerfile:%d: runtime COPY not from the build stage", in.line)
			}
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q: want a numeric non-root user", user)
	}
	if entry != `["/usr/local/bin/indexer"]` {
		t.Errorf("ENTRYPOINT %s, want the exec form of /usr/local/bin/indexer", entry)
	}
	if !strings.Contains(text(final), "COPY --from=build /out/indexer /usr/local/bin/indexer") {
		t.Error("the runtime stage does not copy the binary the build stage made")
	}
}

// TestMakefileLdflags: make build stamps the version into real variables.
func TestMakefileLdflags(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	checkLdflags(t, "Makefile", string(raw))
}

// checkLdflags finds the -X flags in text and checks that each names a
// package-level string variable of this module, and that version and
// revision are both set.
func checkLdflags(t *testing.T, file, text string) {
	t.Helper()
	set := map[string]bool{}
	for _, m := range regexp.MustCompile(`-X (github\.com/streamindex/indexer/(\S+))\.(\w+)=`).FindAllStringSubmatch(text, -1) {
		dir, name := filepath.Join(repoRoot, m[2]), m[3]
		if !stringVar(t, dir, name) {
			t.Errorf("%s: -X %s.%s: no package-level string variable %s in %s", file, m[1], name, name, dir)
		}
		set[name] = true
	}
	if !set["version"] || !set["revision"] {
		t.Errorf("%s: -X flags set %v, want version and revision", file, set)
	}
}

func stringVar(t *testing.T, dir, name string) bool {
	pkgs, err := parser.ParseDir(token.NewFileSet(), dir, func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkgs {
		for _, f := range p.Files {
			for _, d := range f.Decls {
				g, ok := d.(*ast.GenDecl)
				if !ok || g.Tok != token.VAR {
					continue
				}
				for _, s := range g.Specs {
					vs := s.(*ast.ValueSpec)
					for _, n := range vs.Names {
						if id, ok := vs.Type.(*ast.Ident); n.Name == name && ok && id.Name == "string" {
							return true
						}
					}
				}
			}
		}
	}
	return false
}

// TestSystemdUnit verifies the unit with systemd-analyze (no warnings at
// all: systemd ignores unknown keys with only a warning) and checks its
// hardening: systemd's own exposure score must stay "OK".
func TestSystemdUnit(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze not found: install it with 'sudo apt-get install -y systemd'; tests never skip")
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot, "deploy/systemd/indexer.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(raw)
	for _, want := range []string{"ExecStart=/usr/local/bin/indexer run", "DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict",
		"ProtectHome=yes", "PrivateTmp=yes", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "CapabilityBoundingSet=\n",
		"SystemCallFilter=@system-service", "EnvironmentFile=-/etc/indexer/indexer.env", "LoadCredential=redis-password:",
		"INDEXER_REDIS_PASSWORD_FILE=%d/redis-password"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	// verify wants the ExecStart binary to exist: use the test's.
	path := filepath.Join(t.TempDir(), "indexer.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/indexer", binary)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command("systemd-analyze", "security", "--offline=true", path).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for indexer\.service: ([0-9.]+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	if score, _ := strconv.ParseFloat(string(m[1]), 64); score > 2.0 {
		t.Errorf("exposure level %.1f, want at most 2.0 (systemd's OK)", score)
	}
	t.Logf("systemd-analyze security: exposure %s", m[1])
}
