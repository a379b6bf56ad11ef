package main

import (
	"context"
	"flag"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

func init() {
	register(&command{
		name: "completion",
		args: "bash|zsh",
		summary: "print the shell completion script for bash or zsh: " +
			"source <(indexer completion bash), or put 'indexer completion zsh' in a file named _indexer on $fpath",
		setup: setupCompletion,
	})
}

// completeCommand is the hidden command the completion scripts call: it
// prints the candidates for the last word of the command line it is given
// (the words after "indexer", the last one being completed, possibly
// empty), one per line, or a single line ":file" or ":dir" when the shell
// should complete a file or directory name. The candidates come from the
// command registry, so they never go stale.
const completeCommand = "__complete"

func setupCompletion(fs *flag.FlagSet, a *app) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if len(args) != 1 {
			return usagef("name the shell: bash or zsh")
		}
		switch args[0] {
		case "bash":
			fmt.Fprint(a.stdout, bashCompletion)
		case "zsh":
			fmt.Fprint(a.stdout, zshCompletion)
		default:
			return usagef("shell %q: use bash or zsh", args[0])
		}
		return nil
	}
}

// complete prints the candidates for words (see completeCommand).
func (a *app) complete(words []string) {
	if len(words) == 0 {
		words = []string{""}
	}
	cur, prev := words[len(words)-1], words[:len(words)-1]
	for _, w := range completions(cur, prev) {
		if strings.HasPrefix(w, cur) || w == ":file" || w == ":dir" {
			fmt.Fprintln(a.stdout, w)
		}
	}
}

func completions(cur string, prev []string) []string {
	if len(prev) == 0 {
		return append(commandNames(), "help", "version", "--help", "--version")
	}
	if prev[0] == "help" {
		if len(prev) == 1 {
			return commandNames()
		}
		return nil
	}
	c := findCommand(prev[0])
	if c == nil {
		return nil
	}
	fs := commandFlags(c)
	if last := prev[len(prev)-1]; len(prev) > 1 && strings.HasPrefix(last, "-") && !strings.Contains(last, "=") {
		if f := fs.Lookup(strings.TrimLeft(last, "-")); f != nil && !isBool(f) {
			return flagValues(f, "")
		}
	}
	if strings.HasPrefix(cur, "-") {
		if name, _, ok := strings.Cut(strings.TrimLeft(cur, "-"), "="); ok {
			if f := fs.Lookup(name); f != nil {
				return flagValues(f, "--"+name+"=")
			}
			return nil
		}
		out := []string{"--help"}
		fs.VisitAll(func(f *flag.Flag) { out = append(out, "--"+f.Name) })
		return out
	}
	// A positional argument: the command's verbs, if it has any, first.
	n := 0
	for i := 1; i < len(prev); i++ {
		w := prev[i]
		if !strings.HasPrefix(w, "-") {
			n++
		} else if f := fs.Lookup(strings.TrimLeft(w, "-")); f != nil && !isBool(f) && !strings.Contains(w, "=") {
			i++ // the flag's value
		}
	}
	if n == 0 {
		return wordChoices(strings.ReplaceAll(c.args, "|", " or "))
	}
	return nil
}

func commandNames() []string {
	var out []string
	for _, c := range commands {
		out = append(out, c.name)
	}
	sort.Strings(out)
	return out
}

// flagValues returns the values a flag takes, each after prefix: the
// choices its help text lists ("log `format`: text, json or auto"), or a
// file or directory name when its argument is named so.
func flagValues(f *flag.Flag, prefix string) []string {
	name, _ := flag.UnquoteUsage(f)
	switch name {
	case "file":
		return []string{":file"}
	case "dir":
		return []string{":dir"}
	}
	_, list, ok := strings.Cut(f.Usage, "`: ")
	if !ok {
		return nil
	}
	list, _, _ = strings.Cut(list, ";")
	var out []string
	for _, v := range wordChoices(list) {
		out = append(out, prefix+v)
	}
	return out
}

var choiceWord = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

// wordChoices reads "a, b (remark) or c" as [a b c]; anything else (a
// sentence, a placeholder) gives nil.
func wordChoices(s string) []string {
	var b strings.Builder
	depth := 0
	for _, r := range s {
		switch {
		case r == '(':
			depth++
		case r == ')':
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	var out []string
	for _, w := range strings.FieldsFunc(b.String(), func(r rune) bool { return r == ',' || r == ' ' }) {
		if w == "or" {
			continue
		}
		if !choiceWord.MatchString(w) {
			return nil
		}
		out = append(out, w)
	}
	if len(out) < 2 {
		return nil
	}
	return out
}

// The scripts hand the words to 'indexer __complete' and show what it
// prints.
const bashCompletion = `# bash completion for indexer: source <(indexer completion bash)
_indexer() {
    local line="${COMP_LINE:0:COMP_POINT}" words out cur
    read -ra words <<< "$line"
    [[ -z "$line" || "$line" == *[[:space:]] ]] && words+=("")
    out="$("${words[0]}" __complete "${words[@]:1}" 2>/dev/null)" || return
    cur="${words[${#words[@]}-1]}"
    # With '=' in COMP_WORDBREAKS, bash replaces only what follows it.
    local strip=""
    [[ "$cur" == --*=* && "$COMP_WORDBREAKS" == *=* ]] && strip="${cur%%=*}="
    case "$out" in
        :file) COMPREPLY=($(compgen -f -- "${cur#"$strip"}")); compopt -o filenames 2>/dev/null ;;
        :dir) COMPREPLY=($(compgen -d -- "${cur#"$strip"}")); compopt -o filenames 2>/dev/null ;;
        *) local IFS=$'\n'; COMPREPLY=($out); COMPREPLY=("${COMPREPLY[@]#"$strip"}") ;;
    esac
}
complete -F _indexer indexer
`

const zshCompletion = `#compdef indexer
# zsh completion for indexer: save as _indexer in a directory on $fpath,
# or: source <(indexer completion zsh)
_indexer() {
    local -a cands
    local out
    out="$("${words[1]}" __complete "${(@)words[2,CURRENT]}" 2>/dev/null)" || return 1
    case "$out" in
        :file) _files ;;
        :dir) _files -/ ;;
        *) cands=("${(@f)out}"); compadd -Q -- "${cands[@]}" ;;
    esac
}
if [[ "$funcstack[1]" == "_indexer" ]]; then
    _indexer "$@"
else
    compdef _indexer indexer
fi
`
