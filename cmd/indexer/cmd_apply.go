package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/streamindex/indexer/event"
	"github.com/streamindex/indexer/internal/consumer"
	"github.com/streamindex/indexer/internal/index"
	"github.com/streamindex/indexer/internal/progress"
)

func init() {
	register(&command{
		name:    "apply",
		summary: "apply NDJSON events from --file (or stdin) straight to the index, without a stream (backfills, tests); prints the count per outcome",
		setup:   setupApply,
	})
}

// maxReported bounds the invalid lines printed one by one.
const maxReported = 20

func setupApply(fs *flag.FlagSet, a *app) func(context.Context, []string) error {
	ro := addIndexFlags(fs)
	do := addDecoderFlags(fs)
	addQueueFlags(fs, ro, do, false)
	addWaitFlags(fs, ro, "each patch_index call")
	file := fs.String("file", "-", "NDJSON `file` of events, one per line; - reads stdin")
	var batch int
	intVar(fs, &batch, "batch-size", 1000, 1, "`events` applied per patch_index call")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected argument %q (the input is --file)", args[0])
		}
		dec, err := do.decoder(ro.layout)
		if err != nil {
			return err
		}
		in, closeIn, err := openInput(a, *file)
		if err != nil {
			return err
		}
		defer closeIn()
		x, c, err := ro.openIndex(ctx, index.Config{MaxEventsPerCall: batch, Decoded: true}) // dec validates every line
		if err != nil {
			return err
		}
		defer c.Close()

		bar := progress.New(a.stderr, a.stderrTTY, "applied", 0)
		bar.Start()
		counts := map[index.Outcome]int{}
		invalid, refused, outside := 0, 0, 0
		var events []event.Event
		var lines []int
		flush := func() error {
			if len(events) == 0 {
				return nil
			}
			// An event the index refuses (a damaged key) is reported and
			// skipped; the others go through.
			outs, err := consumer.ApplyIsolating(ctx, events, x.Apply, func(i int, err error) {
				refused++
				if refused <= maxReported {
					fmt.Fprintf(a.stderr, "line %d: refused by the index: %v\n", lines[i], err)
				}
			})
			if err != nil {
				return err
			}
			for i, o := range outs {
				if o == 0 {
					continue
				}
				counts[o]++
				if index.OutsideHour(&events[i]) {
					outside++
					if outside <= maxReported {
						fmt.Fprintf(a.stderr, "line %d: warning: min_time..max_time leaves the file's hour folder; GigAPI's readers miss it in queries of the other hours\n", lines[i])
					}
				}
			}
			bar.Add(int64(len(events)))
			events, lines = events[:0], lines[:0]
			return nil
		}
		err = readLines(in, do.maxBytes, func(n int, line []byte, tooLong bool) error {
			var e event.Event
			var derr error
			if tooLong {
				derr = fmt.Errorf("line is longer than --max-message-bytes %d", do.maxBytes)
			} else {
				e, derr = dec.Decode(event.JSON, line)
			}
			if derr != nil {
				invalid++
				if invalid <= maxReported {
					fmt.Fprintf(a.stderr, "line %d: %v\n", n, derr)
				}
				return nil
			}
			events, lines = append(events, e), append(lines, n)
			if len(events) >= batch {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		bar.Stop()
		if invalid > maxReported {
			fmt.Fprintf(a.stderr, "... and %d more invalid lines\n", invalid-maxReported)
		}
		var sum []string
		for _, o := range index.AllOutcomes {
			sum = append(sum, fmt.Sprintf("%s=%d", o, counts[o]))
		}
		sum = append(sum, fmt.Sprintf("invalid=%d", invalid), fmt.Sprintf("refused=%d", refused))
		fmt.Fprintln(a.stdout, strings.Join(sum, " "))
		if outside > 0 {
			fmt.Fprintf(a.stdout, "warning: %d events put data outside their file's hour folder (GigAPI's readers prune by folder and miss it); fix the writer's paths\n", outside)
		}
		if err != nil {
			return fmt.Errorf("%v (events before the failure stay applied; applying the input again is safe)", err)
		}
		if refused > 0 {
			return fmt.Errorf("the index refused %d events (listed above; 'indexer check' names the damaged keys); repair them and apply the input again", refused)
		}
		if invalid > 0 {
			return fmt.Errorf("%d invalid lines were skipped (listed above); fix them and apply them again", invalid)
		}
		return nil
	}
}

// openInput opens a --file argument; "-" is stdin.
func openInput(a *app, name string) (io.Reader, func(), error) {
	if name == "-" || name == "" {
		return a.stdin, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, fmt.Errorf("--file: %w", err)
	}
	return f, func() { f.Close() }, nil
}

// readLines calls fn for each non-blank line (1-based number, content
// without the newline). A line over max bytes is passed with tooLong and
// without content, and reading goes on after it.
func readLines(r io.Reader, max int, fn func(n int, line []byte, tooLong bool) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	for n := 1; ; n++ {
		buf = buf[:0]
		tooLong := false
		for {
			chunk, err := br.ReadSlice('\n')
			if !tooLong {
				buf = append(buf, chunk...)
				if len(buf) > max+2 {
					tooLong, buf = true, buf[:0]
				}
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			line := bytes.TrimSpace(buf)
			if len(line) > 0 || tooLong {
				if ferr := fn(n, line, tooLong); ferr != nil {
					return ferr
				}
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			break
		}
	}
}

// formatTime renders Unix nanoseconds as RFC 3339 in UTC.
func formatTime(ns int64) string {
	if ns == 0 {
		return "-"
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
}
