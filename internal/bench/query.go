package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"time"
)

// queryDay is the day the query table's files cover.
var queryDay = time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)

// queryOnce runs 'indexer query' for the whole of queryDay on the query
// table, as a child process writing NDJSON, and returns its wall time
// (process start included) and the number of entries it printed.
func (e *env) queryOnce(ctx context.Context) (time.Duration, int, error) {
	cmd := exec.CommandContext(ctx, e.cfg.WorkerBinary, "query", "--redis-url", e.redis.URL(),
		"--database", benchDatabase, "--table", queryTable,
		"--after", queryDay.Format(time.RFC3339Nano), "--before", queryDay.Add(24*time.Hour-1).Format(time.RFC3339Nano),
		"--format", "ndjson")
	cmd.Env = cleanEnv()
	lines := &lineCounter{}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = lines, &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("bench: indexer query: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return took, lines.n, nil
}

// lineCounter counts newline bytes written to it.
type lineCounter struct{ n int }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}

var _ io.Writer = (*lineCounter)(nil)
