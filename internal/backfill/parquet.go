package backfill

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/streamindex/indexer/event"
)

// TimestampColumn is the column GigAPI writers put each row's time in:
// INT64 Unix nanoseconds, or an INT64 timestamp logical type (milli-,
// micro- or nanoseconds).
const TimestampColumn = "__timestamp"

// footer is what a file's footer (and, without statistics, its
// __timestamp column) says.
type footer struct {
	rows     int64
	min, max int64 // Unix ns
}

// readFooter reads a Parquet file's footer: its row count and the min and
// max of its __timestamp column. Only the footer is read, unless a row
// group lacks the column's statistics: then that column chunk's pages
// are read one at a time.
func readFooter(name string, size int64) (footer, error) {
	fh, err := os.Open(name)
	if err != nil {
		return footer{}, err
	}
	defer fh.Close()
	pf, err := parquet.OpenFile(fh, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return footer{}, fmt.Errorf("not a readable Parquet file: %w", err)
	}
	fp := footer{rows: pf.NumRows()}
	if fp.rows == 0 {
		return fp, errors.New("a Parquet file without rows")
	}
	leaf, ok := pf.Schema().Lookup(TimestampColumn)
	if !ok || leaf.Node == nil {
		return fp, fmt.Errorf("no %s column", TimestampColumn)
	}
	unit, err := timeUnit(leaf.Node.Type())
	if err != nil {
		return fp, err
	}
	first := true
	note := func(lo, hi int64) {
		if first || lo < fp.min {
			fp.min = lo
		}
		if first || hi > fp.max {
			fp.max = hi
		}
		first = false
	}
	md := pf.Metadata()
	for i, rg := range pf.RowGroups() {
		if rg.NumRows() == 0 {
			continue
		}
		var st *format.Statistics
		if i < len(md.RowGroups) && leaf.ColumnIndex < len(md.RowGroups[i].Columns) {
			st = &md.RowGroups[i].Columns[leaf.ColumnIndex].MetaData.Statistics
		}
		if lo, hi, ok := statBounds(st); ok {
			note(lo, hi)
			continue
		}
		lo, hi, n, err := scanColumn(rg.ColumnChunks()[leaf.ColumnIndex])
		if err != nil {
			return fp, fmt.Errorf("reading %s of row group %d: %w", TimestampColumn, i, err)
		}
		if n > 0 {
			note(lo, hi)
		}
	}
	if first {
		return fp, fmt.Errorf("%s holds no value", TimestampColumn)
	}
	if fp.min, err = toNanos(fp.min, unit); err != nil {
		return fp, err
	}
	if fp.max, err = toNanos(fp.max, unit); err != nil {
		return fp, err
	}
	return fp, nil
}

// timeUnit checks the __timestamp column's type: INT64, plain (ns) or a
// timestamp logical type.
func timeUnit(t parquet.Type) (time.Duration, error) {
	if t.Kind() != parquet.Int64 {
		return 0, fmt.Errorf("%s is %s, not INT64 nanoseconds or an INT64 timestamp", TimestampColumn, t)
	}
	lt := t.LogicalType()
	if lt == nil || lt.Value == nil {
		return time.Nanosecond, nil
	}
	if it, ok := lt.Value.(*format.IntType); ok && it.BitWidth == 64 && it.IsSigned {
		return time.Nanosecond, nil // INT(64, signed): plain nanoseconds
	}
	ts, ok := lt.Value.(*format.TimestampType)
	if !ok {
		return 0, fmt.Errorf("%s is %s, not INT64 nanoseconds or an INT64 timestamp", TimestampColumn, lt)
	}
	switch ts.Unit.Value.(type) {
	case *format.MilliSeconds:
		return time.Millisecond, nil
	case *format.MicroSeconds:
		return time.Microsecond, nil
	case *format.NanoSeconds:
		return time.Nanosecond, nil
	}
	return 0, fmt.Errorf("%s has an unknown time unit %s", TimestampColumn, strings.TrimSpace(fmt.Sprint(ts.Unit.Value)))
}

// toNanos converts v in unit to Unix nanoseconds, which must be a valid
// event time.
func toNanos(v int64, unit time.Duration) (int64, error) {
	m := int64(unit)
	if v < 0 || v > event.MaxTimeNanos/m {
		return 0, fmt.Errorf("%s value %d (%s) is not a time from 1970 to 2255", TimestampColumn, v, unit)
	}
	return v * m, nil
}

// statBounds reads INT64 min and max from column chunk statistics: the
// min_value/max_value fields, else the deprecated min/max (signed order,
// right for INT64).
func statBounds(st *format.Statistics) (lo, hi int64, ok bool) {
	if st == nil {
		return 0, 0, false
	}
	mn, mx := st.MinValue, st.MaxValue
	if len(mn) != 8 || len(mx) != 8 {
		mn, mx = st.Min, st.Max
	}
	if len(mn) != 8 || len(mx) != 8 {
		return 0, 0, false
	}
	return int64(binary.LittleEndian.Uint64(mn)), int64(binary.LittleEndian.Uint64(mx)), true
}

// scanColumn reads a column chunk's INT64 values, a page at a time, and
// returns their min, max and count (nulls skipped).
func scanColumn(cc parquet.ColumnChunk) (lo, hi int64, n int64, err error) {
	pages := cc.Pages()
	defer pages.Close()
	buf := make([]parquet.Value, 1024)
	for {
		p, err := pages.ReadPage()
		if errors.Is(err, io.EOF) {
			return lo, hi, n, nil
		}
		if err != nil {
			return 0, 0, 0, err
		}
		vr := p.Values()
		for {
			k, err := vr.ReadValues(buf)
			for _, v := range buf[:k] {
				if v.IsNull() {
					continue
				}
				x := v.Int64()
				if n == 0 || x < lo {
					lo = x
				}
				if n == 0 || x > hi {
					hi = x
				}
				n++
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				parquet.Release(p)
				return 0, 0, 0, err
			}
		}
		parquet.Release(p)
	}
}
