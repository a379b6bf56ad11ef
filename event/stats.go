package event

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
		if err := b.name([]byte(k), false); err != nil {
			return Stats{}, err
		}
		var err error
		switch v := m[k].(type) {
		case nil:
			b.literal("null")
		case bool:
			b.literal(strconv.FormatBool(v))
		case string:
			err = b.str([]byte(v), false)
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
			err = b.float(float64(v), 32)
		case float64:
			err = b.float(v, 64)
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
// use it, so every Stats has one form whatever its origin. It is built for
// speed: names and strings that are already canonical (the usual case) are
// copied, and duplicates of small objects are found without a map.
type statsBuilder struct {
	buf   []byte
	n     int
	spans []span              // the quoted names in buf, in order
	index map[string]struct{} // the quoted names, once an object has many
}

// span is a range of buf.
type span struct{ start, end int }

// smallStats is the column count up to which duplicates are found by
// comparing with every earlier name.
const smallStats = 16

// fieldError is an error about a member of a min/max object; the decoder
// turns it into a ValidationError on "<field>.<sub>".
type fieldError struct{ sub, reason string }

func (e fieldError) Error() string { return e.sub + ": " + e.reason }

func (b *statsBuilder) begin() {
	b.buf = append(b.buf[:0], '{')
	b.n = 0
	b.spans = b.spans[:0]
	if b.index != nil {
		clear(b.index)
	}
}

// lastName returns the name of the column being written, for errors.
func (b *statsBuilder) lastName() string {
	sp := b.spans[len(b.spans)-1]
	u, err := jsontext.AppendUnquote(nil, b.buf[sp.start:sp.end])
	if err != nil {
		return string(b.buf[sp.start:sp.end])
	}
	return string(u)
}

// name starts a column. utf8OK says name is known to be valid UTF-8 (the
// JSON decoder checked it).
func (b *statsBuilder) name(name []byte, utf8OK bool) error {
	if !utf8OK && !utf8.Valid(name) {
		return errors.New("column name is not valid UTF-8")
	}
	if len(name) == 0 || len(name) > MaxColumnName && utf8.RuneCount(name) > MaxColumnName {
		return fieldError{string(name), fmt.Sprintf("column names must be 1 to %d characters", MaxColumnName)}
	}
	if b.n == MaxStatsColumns {
		return fmt.Errorf("more than %d columns", MaxStatsColumns)
	}
	mark := len(b.buf)
	if b.n > 0 {
		b.buf = append(b.buf, ',')
	}
	start := len(b.buf)
	b.buf = appendQuoted(b.buf, name)
	q := b.buf[start:]
	if b.n < smallStats {
		for _, sp := range b.spans {
			if bytes.Equal(b.buf[sp.start:sp.end], q) {
				b.buf = b.buf[:mark]
				return fieldError{string(name), "duplicate column"}
			}
		}
	} else {
		if b.index == nil {
			b.index = make(map[string]struct{})
		}
		if len(b.index) == 0 {
			for _, sp := range b.spans {
				b.index[string(b.buf[sp.start:sp.end])] = struct{}{}
			}
		}
		if _, dup := b.index[string(q)]; dup {
			b.buf = b.buf[:mark]
			return fieldError{string(name), "duplicate column"}
		}
		b.index[string(q)] = struct{}{}
	}
	b.spans = append(b.spans, span{start, len(b.buf)})
	b.n++
	b.buf = append(b.buf, ':')
	return nil
}

// appendQuoted appends s as a JSON string with jsontext's canonical
// escaping; s must be valid UTF-8. Text needing no escape is copied.
func appendQuoted(dst, s []byte) []byte {
	for _, c := range s {
		if c < 0x20 || c == '"' || c == '\\' {
			dst, _ = jsontext.AppendQuote(dst, s)
			return dst
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

func (b *statsBuilder) literal(s string) { b.buf = append(b.buf, s...) }
func (b *statsBuilder) int(v int64)      { b.buf = strconv.AppendInt(b.buf, v, 10) }
func (b *statsBuilder) uint(v uint64)    { b.buf = strconv.AppendUint(b.buf, v, 10) }

// str writes a string value; utf8OK as for name.
func (b *statsBuilder) str(v []byte, utf8OK bool) error {
	if !utf8OK && !utf8.Valid(v) {
		return fieldError{b.lastName(), "string is not valid UTF-8"}
	}
	if len(v) > MaxStatsString && utf8.RuneCount(v) > MaxStatsString {
		return fieldError{b.lastName(), fmt.Sprintf("string values are limited to %d characters", MaxStatsString)}
	}
	b.buf = appendQuoted(b.buf, v)
	return nil
}

func (b *statsBuilder) float(f float64, bits int) error {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fieldError{b.lastName(), "number must be finite"}
	}
	if f == math.Trunc(f) && math.Abs(f) < 1<<63 {
		b.int(int64(f))
		return nil
	}
	b.buf = jsontext.AppendFloat(b.buf, f, bits)
	return nil
}

// number appends a JSON number given as text, in canonical form.
func (b *statsBuilder) number(raw []byte) error {
	if canonicalInt(raw) {
		b.buf = append(b.buf, raw...)
		return nil
	}
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
		return fieldError{b.lastName(), "number is out of the range of a 64-bit float"}
	}
	return b.float(f, 64)
}

// canonicalInt reports whether raw, a valid JSON number, is an integer
// already in the form number writes: within int64 or uint64, and not -0.
// (JSON has no leading zeros.)
func canonicalInt(raw []byte) bool {
	digits := raw
	neg := len(raw) > 0 && raw[0] == '-'
	if neg {
		digits = raw[1:]
	}
	if len(digits) == 0 || len(digits) > 20 {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	switch {
	case neg && len(digits) == 1 && digits[0] == '0':
		return false // -0 is written 0
	case len(digits) <= 18:
		return true
	case neg:
		return len(digits) == 19 && string(digits) <= "9223372036854775808"
	case len(digits) == 19:
		return true // below 10^19, within uint64
	default:
		return string(digits) <= "18446744073709551615"
	}
}

func (b *statsBuilder) done() Stats {
	b.buf = append(b.buf, '}')
	return Stats{text: string(b.buf), n: b.n}
}
