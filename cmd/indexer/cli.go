package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/streamindex/indexer/internal/buildinfo"
	"github.com/streamindex/indexer/internal/redact"
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
	// secrets scrubs stderr: run wraps stderr in it and tells it of every
	// credential the flags, environment and config file hold.
	secrets *redact.Writer
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

func (a *app) mainUsage(w io.Writer) {
	fmt.Fprintf(w, "indexer keeps GigAPI's file index in Redis, fed by events from Redis Streams or NATS JetStream.\n")
	fmt.Fprintf(w, "%s\n\n", buildinfo.Get())
	fmt.Fprintf(w, "Usage: indexer <command> [flags] [args]\n\nCommands:\n")
	sorted := append([]*command(nil), commands...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	for _, c := range sorted {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'indexer help <command>' or 'indexer <command> --help' for its flags; 'indexer --version' for the build.\n"+
		"Every flag can also be set with INDEXER_<FLAG> (upper case, - becomes _) or in a --config file of\n"+
		"'flag = value' lines, which may hold the flags of every command; a flag on the command line wins\n"+
		"over the environment, which wins over the file. Exit codes: 0 success, 1 failure, 2 usage error.\n")
}

// run runs the command line args and returns the exit code.
func (a *app) run(ctx context.Context, args []string) int {
	// Whatever reaches stderr (errors, logs, progress) goes through the
	// scrubber, which learns every credential the flags hold.
	a.secrets = redact.NewWriter(a.stderr)
	a.stderr = a.secrets
	slog.SetDefault(slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

	if len(args) == 0 {
		a.mainUsage(a.stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		a.mainUsage(a.stdout)
		return exitOK
	case "-version", "--version", "version":
		fmt.Fprintln(a.stdout, buildinfo.Get())
		return exitOK
	case "help":
		if len(args) == 1 {
			a.mainUsage(a.stdout)
			return exitOK
		}
		c := findCommand(args[1])
		if c == nil {
			fmt.Fprintf(a.stderr, "indexer help: unknown command %q; run 'indexer --help' for the list\n", args[1])
			return exitUsage
		}
		a.commandUsage(c, commandFlags(c))
		return exitOK
	case completeCommand:
		a.complete(args[1:])
		return exitOK
	}
	c := findCommand(args[0])
	if c == nil {
		fmt.Fprintf(a.stderr, "indexer: unknown command %q; run 'indexer --help' for the list\n", args[0])
		return exitUsage
	}
	fs := flag.NewFlagSet("indexer "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	config := fs.String("config", "", configUsage)
	runFn := c.setup(fs, a)
	fs.Usage = func() {} // printed below, once
	err := fs.Parse(interspersed(fs, args[1:]))
	fs.Visit(func(f *flag.Flag) { a.noteSecrets(f.Name, f.Value.String()) })
	if err != nil {
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
	err = runFn(ctx, fs.Args())
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
		fmt.Fprintf(a.stderr, "indexer %s: %v\n", c.name, oneLine(err))
		return exitFail
	}
}

// oneLine is an error's text on one line, as promised to operators and
// their log collectors.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
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

// commandUsage prints a command's help, asked for, to stdout.
func (a *app) commandUsage(c *command, fs *flag.FlagSet) {
	w := a.stdout
	fmt.Fprintf(w, "Usage: indexer %s [flags]", c.name)
	if c.args != "" {
		fmt.Fprintf(w, " %s", c.args)
	}
	fmt.Fprintf(w, "\n\n%s\n\nFlags:\n", c.summary)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		if name == "value" {
			switch f.Value.(type) {
			case durationValue:
				name = "duration"
			case intValue:
				name = "int"
			}
		}
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
