package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// usageError is an error in how the command was called: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// app is the process environment a command runs in; tests replace it.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// stderrTTY reports whether stderr is a terminal (progress bars, text
	// logs).
	stderrTTY bool
}

// command is one subcommand.
type command struct {
	name    string
	args    string // positional arguments, for the usage line
	summary string
	// setup registers the command's flags and returns the function that
	// runs it once they are parsed.
	setup func(fs *flag.FlagSet, a *app) func(ctx context.Context, args []string) error
}

var commands []*command

func register(c *command) { commands = append(commands, c) }

func findCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (a *app) mainUsage() {
	fmt.Fprintf(a.stderr, "indexer keeps GigAPI's file index in Redis, fed by events from Redis Streams or NATS JetStream.\n\n")
	fmt.Fprintf(a.stderr, "Usage: indexer <command> [flags] [args]\n\nCommands:\n")
	sorted := append([]*command(nil), commands...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	for _, c := range sorted {
		fmt.Fprintf(a.stderr, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(a.stderr, "\nRun 'indexer <command> --help' for its flags. Every flag can also be set with\n"+
		"INDEXER_<FLAG> (upper case, - becomes _) or in a --config file of 'flag = value' lines;\n"+
		"a flag on the command line wins over the environment, which wins over the file.\n"+
		"Exit codes: 0 success, 1 failure, 2 usage error.\n")
}

// run runs the command line args and returns the exit code.
func (a *app) run(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		a.mainUsage()
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	c := findCommand(args[0])
	if c == nil {
		fmt.Fprintf(a.stderr, "indexer: unknown command %q; run 'indexer --help' for the list\n", args[0])
		return exitUsage
	}
	fs := flag.NewFlagSet("indexer "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	config := fs.String("config", "", "read flag values from this `file` of 'flag = value' lines (# starts a comment)")
	runFn := c.setup(fs, a)
	fs.Usage = func() {} // printed below, once
	if err := fs.Parse(interspersed(fs, args[1:])); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			a.commandUsage(c, fs)
			return exitOK
		}
		fmt.Fprintf(a.stderr, "indexer %s: %v; run 'indexer %s --help'\n", c.name, err, c.name)
		return exitUsage
	}
	if err := a.applyDefaults(fs, *config); err != nil {
		fmt.Fprintf(a.stderr, "indexer %s: %v\n", c.name, err)
		return exitUsage
	}
	err := runFn(ctx, fs.Args())
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(a.stderr, "indexer %s: %v; run 'indexer %s --help'\n", c.name, err, c.name)
		return exitUsage
	case errors.Is(err, errSilentFailure):
		return exitFail
	default:
		fmt.Fprintf(a.stderr, "indexer %s: %v\n", c.name, err)
		return exitFail
	}
}

// errSilentFailure makes a command exit 1 after it reported the failure
// itself (e.g. check listing drifts).
var errSilentFailure = errors.New("failed")

// interspersed moves flags after positional arguments to the front, so
// "indexer get PATH --database d" works as users expect.
func interspersed(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			pos = append(pos, arg)
			continue
		}
		flags = append(flags, arg)
		name := strings.TrimLeft(arg, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil && !isBool(f) && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	return append(flags, pos...)
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// envName is the environment variable of a flag.
func envName(flagName string) string {
	return "INDEXER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyDefaults sets each flag not given on the command line from its
// environment variable, then from the config file.
func (a *app) applyDefaults(fs *flag.FlagSet, configPath string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if configPath == "" {
		configPath = a.getenv(envName("config"))
	}
	var file map[string]string
	if configPath != "" {
		var err error
		if file, err = readConfig(configPath); err != nil {
			return err
		}
		for name := range file {
			if fs.Lookup(name) == nil {
				return fmt.Errorf("config %s: unknown flag %q for this command", configPath, name)
			}
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] || f.Name == "config" {
			return
		}
		if v := a.getenv(envName(f.Name)); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %v", envName(f.Name), redactValue(f.Name, v), e)
			}
			return
		}
		if v, ok := file[f.Name]; ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("config %s: %s = %q: %v", configPath, f.Name, redactValue(f.Name, v), e)
			}
		}
	})
	return err
}

// readConfig reads 'flag = value' lines; '#' starts a comment.
func readConfig(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("config %s:%d: want 'flag = value', got %q", path, n, line)
		}
		out[strings.TrimLeft(strings.TrimSpace(k), "-")] = strings.Trim(strings.TrimSpace(v), `"`)
	}
	return out, sc.Err()
}

// redactValue hides credentials in a flag value shown in an error.
func redactValue(name, v string) string {
	if strings.Contains(name, "url") {
		return redactURL(v)
	}
	if strings.Contains(name, "password") || strings.Contains(name, "token") {
		return "xxxxx"
	}
	return v
}

func (a *app) commandUsage(c *command, fs *flag.FlagSet) {
	w := a.stderr
	fmt.Fprintf(w, "Usage: indexer %s [flags]", c.name)
	if c.args != "" {
		fmt.Fprintf(w, " %s", c.args)
	}
	fmt.Fprintf(w, "\n\n%s\n\nFlags:\n", c.summary)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		arg := ""
		if name != "" {
			arg = " " + name
		}
		fmt.Fprintf(w, "  --%s%s\n", f.Name, arg)
		fmt.Fprintf(w, "        %s\n", usage)
		def := f.DefValue
		if def != "" && def != "0" && def != "false" && def != "0s" {
			fmt.Fprintf(w, "        default %s; env %s\n", def, envName(f.Name))
		} else {
			fmt.Fprintf(w, "        env %s\n", envName(f.Name))
		}
	})
}

// parseTime reads a time flag: RFC 3339 (any zone) or Unix nanoseconds.
func parseTime(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	var ns int64
	if _, err := fmt.Sscan(s, &ns); err == nil && fmt.Sprint(ns) == s {
		return time.Unix(0, ns), nil
	}
	return time.Time{}, usagef("--%s %q: use RFC 3339 (2024-01-15T14:00:00Z) or Unix nanoseconds", name, s)
}

// isTerminal reports whether f is a character device.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
