package bench

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// machine describes the host and the servers (the load average is read
// again at the end of the run).
func (e *env) machine(ctx context.Context) Machine {
	m := Machine{
		CPU:           cpuModel(),
		Cores:         runtime.NumCPU(),
		MemoryMB:      memTotalMB(),
		Kernel:        "Linux " + readTrimmed("/proc/sys/kernel/osrelease"),
		NATSVersion:   server.VERSION,
		GoVersion:     runtime.Version(),
		LoadAvgBefore: LoadAverage(),
	}
	if info, err := e.rc.Info(ctx, "server").Result(); err == nil {
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
				m.RedisVersion = v
			}
		}
	}
	return m
}

// LoadAverage returns the 1, 5 and 15 minute load averages of the host,
// "1.20 0.95 0.80", or "" where /proc/loadavg is missing.
func LoadAverage() string {
	f := strings.Fields(readTrimmed("/proc/loadavg"))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	for _, line := range strings.Split(readTrimmed("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func memTotalMB() int {
	for _, line := range strings.Split(readTrimmed("/proc/meminfo"), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kb / 1024
		}
	}
	return 0
}

func readTrimmed(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}
