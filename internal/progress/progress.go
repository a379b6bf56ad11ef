// Package progress reports the progress of long operations: a redrawn
// bar with rate and ETA on a terminal, a plain line at a slower interval
// otherwise (logs).
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bar tracks a count towards an optional total. Add and Set are safe for
// concurrent use; Start and Stop belong to one goroutine.
type Bar struct {
	w     io.Writer
	tty   bool
	label string
	total atomic.Int64
	n     atomic.Int64
	start time.Time

	stop chan struct{}
	done sync.WaitGroup
}

// New returns a bar writing to w; tty selects the redrawn form. total 0
// means unknown (no percentage or ETA).
func New(w io.Writer, tty bool, label string, total int64) *Bar {
	b := &Bar{w: w, tty: tty, label: label}
	b.total.Store(total)
	return b
}

// Add adds n to the count.
func (b *Bar) Add(n int64) { b.n.Add(n) }

// Set sets the count.
func (b *Bar) Set(n int64) { b.n.Store(n) }

// SetTotal changes the total.
func (b *Bar) SetTotal(n int64) { b.total.Store(n) }

// Count returns the count.
func (b *Bar) Count() int64 { return b.n.Load() }

// Start begins reporting: every 200 ms on a terminal, every 10 s otherwise.
func (b *Bar) Start() {
	b.start = time.Now()
	b.stop = make(chan struct{})
	every := 10 * time.Second
	if b.tty {
		every = 200 * time.Millisecond
	}
	b.done.Add(1)
	go func() {
		defer b.done.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-t.C:
				b.print(false)
			}
		}
	}()
}

// Stop ends reporting and prints the final line.
func (b *Bar) Stop() {
	if b.stop == nil {
		return
	}
	close(b.stop)
	b.done.Wait()
	b.stop = nil
	b.print(true)
}

func (b *Bar) print(final bool) {
	n, total := b.n.Load(), b.total.Load()
	el := time.Since(b.start)
	rate := 0.0
	if s := el.Seconds(); s > 0 {
		rate = float64(n) / s
	}
	var line strings.Builder
	fmt.Fprintf(&line, "%s ", b.label)
	if total > 0 {
		frac := min(float64(n)/float64(total), 1)
		if b.tty {
			const width = 30
			fill := int(frac * width)
			fmt.Fprintf(&line, "[%s%s] ", strings.Repeat("=", fill), strings.Repeat(" ", width-fill))
		}
		fmt.Fprintf(&line, "%d/%d %3.0f%%", n, total, 100*frac)
	} else {
		fmt.Fprintf(&line, "%d", n)
	}
	fmt.Fprintf(&line, " %.0f/s", rate)
	if total > 0 && !final && rate > 0 && n < total {
		eta := time.Duration(float64(total-n) / rate * float64(time.Second))
		fmt.Fprintf(&line, " ETA %s", eta.Round(time.Second))
	}
	if final {
		fmt.Fprintf(&line, " in %s", el.Round(time.Millisecond))
	}
	if b.tty {
		fmt.Fprintf(b.w, "\r\033[K%s", line.String())
		if final {
			fmt.Fprintln(b.w)
		}
		return
	}
	fmt.Fprintln(b.w, line.String())
}
