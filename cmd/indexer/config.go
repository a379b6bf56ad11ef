package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/streamindex/indexer/internal/redact"
)

// envName is the environment variable of a flag.
func envName(flagName string) string {
	return "INDEXER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// configEntry is one 'flag = value' line of a --config file.
type configEntry struct {
	value string
	line  int
}

// applyDefaults sets each flag not given on the command line from its
// environment variable, then from the config file. One file serves every
// command: a key that another command knows is ignored by this one; a key
// no command knows is an error naming the file and line. Every value that
// can hold a credential is handed to a.secrets before anything could
// print it.
func (a *app) applyDefaults(fs *flag.FlagSet, configPath string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if configPath == "" {
		configPath = a.getenv(envName("config"))
	}
	var file map[string]configEntry
	if configPath != "" {
		var err error
		if file, err = a.readConfig(configPath); err != nil {
			return err
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] || f.Name == "config" {
			return
		}
		if v := a.getenv(envName(f.Name)); v != "" {
			a.noteSecrets(f.Name, v)
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %v", envName(f.Name), displayValue(f.Name, v), e)
			}
			return
		}
		if e, ok := file[f.Name]; ok {
			if ferr := fs.Set(f.Name, e.value); ferr != nil {
				err = fmt.Errorf("config %s:%d: %s = %q: %v", configPath, e.line, f.Name, displayValue(f.Name, e.value), ferr)
			}
		}
	})
	return err
}

// readConfig reads 'flag = value' lines; '#' starts a comment, a value may
// be quoted. Errors name the file and line but never show the line: it
// may hold a password.
func (a *app) readConfig(path string) (map[string]configEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	known := allFlagNames()
	out := map[string]configEntry{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("config %s:%d: not a 'flag = value' line (not shown: it may hold a secret)", path, n)
		}
		k = strings.TrimLeft(strings.TrimSpace(k), "-")
		v = strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		a.noteSecrets(k, v)
		if !known[k] {
			return nil, fmt.Errorf("config %s:%d: no indexer command has a flag %q; see 'indexer <command> --help'", path, n, k)
		}
		if first, dup := out[k]; dup {
			return nil, fmt.Errorf("config %s:%d: %s is set again (first on line %d); keep one", path, n, k, first.line)
		}
		out[k] = configEntry{value: v, line: n}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return out, nil
}

// allFlagNames is the union of every command's flags, which a config file
// may set.
var allFlagNames = sync.OnceValue(func() map[string]bool {
	names := map[string]bool{"config": true}
	for _, c := range commands {
		commandFlags(c).VisitAll(func(f *flag.Flag) { names[f.Name] = true })
	}
	return names
})

// commandFlags returns a flag set with c's flags registered, for help,
// completion and the config file's key check. Registering flags has no
// side effects.
func commandFlags(c *command) *flag.FlagSet {
	fs := flag.NewFlagSet("indexer "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.String("config", "", configUsage)
	c.setup(fs, &app{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }})
	return fs
}

const configUsage = "read flag values from this `file` of 'flag = value' lines (# starts a comment); " +
	"one file serves every command: keys of other commands are ignored"

// noteSecrets tells the scrubbing stderr of the credentials a flag's value
// holds.
func (a *app) noteSecrets(name, v string) {
	if a.secrets != nil {
		a.secrets.Add(flagSecrets(name, v)...)
	}
}

// flagSecrets returns the credentials in a flag's value: the passwords and
// tokens of URLs, tokens and passwords themselves, and what password,
// credentials and seed files hold.
func flagSecrets(name, v string) []string {
	switch {
	case v == "":
		return nil
	case strings.HasSuffix(name, "-url"):
		return redact.URLSecrets(v)
	case strings.HasSuffix(name, "-token"), strings.HasSuffix(name, "-password"):
		return []string{v}
	case strings.HasSuffix(name, "-password-file"):
		if b, err := os.ReadFile(v); err == nil {
			return []string{strings.TrimRight(string(b), "\r\n")}
		}
	case strings.HasSuffix(name, "-creds"), strings.HasSuffix(name, "-nkey"):
		// The JWT and the seed: the lines that are one long word.
		b, err := os.ReadFile(v)
		if err != nil {
			return nil
		}
		var out []string
		for _, l := range strings.Fields(string(b)) {
			if len(l) >= 16 && !strings.HasPrefix(l, "-") && !strings.HasPrefix(l, "*") {
				out = append(out, l)
			}
		}
		return out
	}
	return nil
}

// displayValue is a flag value as an error may show it: URLs without
// their secrets, tokens and passwords not at all.
func displayValue(name, v string) string {
	switch {
	case strings.HasSuffix(name, "-url"):
		return redact.URL(v)
	case strings.HasSuffix(name, "-token"), strings.HasSuffix(name, "-password"):
		return redact.Mask
	}
	return v
}
