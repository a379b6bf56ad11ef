//go:build failpoints

package failpoint

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Enabled reports whether failpoints are compiled in.
const Enabled = true

var (
	mu           sync.Mutex
	counts       = map[string]int{}
	rules, modes = parse(os.Getenv("INDEXER_FAILPOINT"))
)

type rule struct {
	action string // "kill" or "stall"
	at     int
}

func parse(s string) (map[string]rule, map[string]bool) {
	out := map[string]rule{}
	modes := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if f == AckBeforeApply || f == NoStateCheck {
			modes[f] = true
			continue
		}
		name, nth, _ := strings.Cut(f, ":")
		n, err := strconv.Atoi(nth)
		if err != nil || n < 1 {
			n = 1
		}
		step, action, ok := cutLast(name, "-")
		if !ok || (action != "kill" && action != "stall") {
			continue
		}
		out[step] = rule{action: action, at: n}
	}
	return out, modes
}

// Active reports whether INDEXER_FAILPOINT names the mode.
func Active(mode string) bool { return modes[mode] }

func cutLast(s, sep string) (string, string, bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

// Inject acts on the step if a failpoint names it.
func Inject(step string) {
	r, ok := rules[step]
	if !ok {
		return
	}
	mu.Lock()
	counts[step]++
	hit := counts[step] == r.at
	mu.Unlock()
	if !hit {
		return
	}
	switch r.action {
	case "kill":
		os.Stderr.WriteString("failpoint: " + step + ": SIGKILL\n")
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	case "stall":
		d, err := time.ParseDuration(os.Getenv("INDEXER_FAILPOINT_STALL"))
		if err != nil {
			d = 5 * time.Second
		}
		os.Stderr.WriteString("failpoint: " + step + ": stalling " + d.String() + "\n")
		time.Sleep(d)
	}
}
