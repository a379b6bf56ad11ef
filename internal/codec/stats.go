package codec

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// Stats holds the per-column statistics of a file (its min or max object):
// up to MaxStatsColumns columns, each a string, number, boolean or null.
//
// It is kept as compact JSON text in canonical form, so it is stored in the
// index verbatim and an int64 such as 1705327200123456789 survives exactly:
// integers within int64 or uint64 are written in decimal, other numbers in
// the shortest form that reads back as the same float64, strings with
// minimal escaping. A Stats can only be built by decoding or by
// StatsFromMap, so it is always valid. The zero value means absent (null).
type Stats struct {
	text string
	n    int
}

// IsZero reports whether the statistics are absent.
func (s Stats) IsZero() bool { return s.text == "" }

// Len returns the number of columns.
func (s Stats) Len() int { return s.n }

// String returns the JSON text, "null" when absent.
func (s Stats) String() string {
	if s.text == "" {
		return "null"
	}
	return s.text
}

// AppendJSON appends the JSON text ("null" when absent) to dst.
func (s Stats) AppendJSON(dst []byte) []byte { return append(dst, s.String()...) }

// each calls fn for each column with its name and its canonical JSON value.
func (s Stats) each(fn func(name string, value jsontext.Value) error) error {
	if s.text == "" {
		return nil
	}
	d := jsontext.NewDecoder(bytes.NewReader([]byte(s.text)))
	if _, err := d.ReadToken(); err != nil {
		return err
	}
	for d.PeekKind() != '}' {
		tok, err := d.ReadToken()
		if err != nil {
			return err
		}
		name := tok.String()
		v, err := d.ReadValue()
		if err != nil {
			return err
		}
		if err := fn(name, v); err != nil {
			return err
		}
	}
	return nil
}

// StatsFromMap builds Stats from Go values: string, bool, nil, any integer
// or float type. Columns are ordered by name. For events built in Go.
func StatsFromMap(m map[string]any) (Stats, error) {
	if m == nil {
		return Stats{}, nil
	}
	var b statsBuilder
	b.begin()
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}) {
		if err := b.name(k); err != nil {
			return Stats{}, err
		}
		var err error
		switch v := m[k].(type) {
		case nil:
			b.literal("null")
		case bool:
			b.literal(strconv.FormatBool(v))
		case string:
			err = b.str(k, v)
		case int:
			b.int(int64(v))
		case int8:
			b.int(int64(v))
		case int16:
			b.int(int64(v))
		case int32:
			b.int(int64(v))
		case int64:
			b.int(v)
		case uint:
			b.uint(uint64(v))
		case uint8:
			b.uint(uint64(v))
		case uint16:
			b.uint(uint64(v))
		case uint32:
			b.uint(uint64(v))
		case uint64:
			b.uint(v)
		case float32:
			err = b.float(k, float64(v), 32)
		case float64:
			err = b.float(k, v, 64)
		default:
			err = fieldError{k, fmt.Sprintf("unsupported value of type %T: use a string, number, boolean or nil", v)}
		}
		if err != nil {
			return Stats{}, err
		}
	}
	return b.done(), nil
}

// statsBuilder writes canonical Stats text; both decoders and StatsFromMap
// use it, so every Stats has one form whatever its origin.
type statsBuilder struct {
	buf   []byte
	n     int
	names map[string]struct{}
}

// fieldError is an error about a member of a min/max object; the decoder
// turns it into a ValidationError on "<field>.<sub>".
type fieldError struct{ sub, reason string }

func (e fieldError) Error() string { return e.sub + ": " + e.reason }

func (b *statsBuilder) begin() {
	b.buf = append(b.buf[:0], '{')
	b.n = 0
	if b.names == nil {
		b.names = make(map[string]struct{})
	}
	clear(b.names)
}

func (b *statsBuilder) name(name string) error {
	if !utf8.ValidString(name) {
		return errors.New("column name is not valid UTF-8")
	}
	if !validStatsName(name) {
		return fieldError{name, fmt.Sprintf("column names must be 1 to %d characters", MaxColumnName)}
	}
	if _, dup := b.names[name]; dup {
		return fieldError{name, "duplicate column"}
	}
	if b.n == MaxStatsColumns {
		return fmt.Errorf("more than %d columns", MaxStatsColumns)
	}
	b.names[name] = struct{}{}
	if b.n > 0 {
		b.buf = append(b.buf, ',')
	}
	b.n++
	b.buf, _ = jsontext.AppendQuote(b.buf, name)
	b.buf = append(b.buf, ':')
	return nil
}

func (b *statsBuilder) literal(s string) { b.buf = append(b.buf, s...) }
func (b *statsBuilder) int(v int64)      { b.buf = strconv.AppendInt(b.buf, v, 10) }
func (b *statsBuilder) uint(v uint64)    { b.buf = strconv.AppendUint(b.buf, v, 10) }

func (b *statsBuilder) str(col, v string) error {
	if !utf8.ValidString(v) {
		return fieldError{col, "string is not valid UTF-8"}
	}
	if utf8.RuneCountInString(v) > MaxStatsString {
		return fieldError{col, fmt.Sprintf("string values are limited to %d characters", MaxStatsString)}
	}
	b.buf, _ = jsontext.AppendQuote(b.buf, v)
	return nil
}

func (b *statsBuilder) float(col string, f float64, bits int) error {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fieldError{col, "number must be finite"}
	}
	if f == math.Trunc(f) && math.Abs(f) < 1<<63 {
		b.int(int64(f))
		return nil
	}
	b.buf = jsontext.AppendFloat(b.buf, f, bits)
	return nil
}

// number appends a JSON number given as text in canonical form.
func (b *statsBuilder) number(col string, raw []byte) error {
	if !bytes.ContainsAny(raw, ".eE") {
		if v, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
			b.int(v)
			return nil
		}
		if v, err := strconv.ParseUint(string(raw), 10, 64); err == nil {
			b.uint(v)
			return nil
		}
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return fieldError{col, "number is out of the range of a 64-bit float"}
	}
	return b.float(col, f, 64)
}

func (b *statsBuilder) done() Stats {
	b.buf = append(b.buf, '}')
	return Stats{text: string(b.buf), n: b.n}
}
