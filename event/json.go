package event

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// jsonSource reads an event from JSON text with jsontext, which rejects
// duplicate member names and invalid UTF-8 and gives numbers as exact text.
// It reads from a bytes.Buffer, which jsontext parses in place: the whole
// message at once, so an error's text does not depend on how much of the
// message an earlier, longer one made the decoder buffer.
type jsonSource struct {
	r       bytes.Buffer
	dec     *jsontext.Decoder
	scratch []byte
	sb      statsBuilder
}

func newJSONSource() *jsonSource {
	s := &jsonSource{}
	// Duplicate names are reported by the shared decoder, which names
	// the field.
	s.dec = jsontext.NewDecoder(&s.r, jsontext.AllowDuplicateNames(true))
	return s
}

func (s *jsonSource) reset(data []byte) {
	s.r = *bytes.NewBuffer(data)
	s.dec.Reset(&s.r, jsontext.AllowDuplicateNames(true))
}

// syntax turns a jsontext error into a reason.
func syntax(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("invalid JSON: unexpected end of input")
	}
	msg := strings.TrimPrefix(err.Error(), "jsontext: ")
	return errors.New("invalid JSON: " + msg)
}

// peek returns the kind of the next token; on malformed input it returns
// the syntax error.
func (s *jsonSource) peek() (jsontext.Kind, error) {
	k := s.dec.PeekKind()
	if k == 0 {
		_, err := s.dec.ReadToken()
		if err == nil {
			err = errors.New("unexpected input")
		}
		return 0, syntax(err)
	}
	return k, nil
}

func (s *jsonSource) expect(kind jsontext.Kind, what string) error {
	k, err := s.peek()
	if err != nil {
		return err
	}
	if k != kind {
		return fmt.Errorf("must be %s, not %s", what, kindName(k))
	}
	if _, err := s.dec.ReadToken(); err != nil {
		return syntax(err)
	}
	return nil
}

func kindName(k jsontext.Kind) string {
	switch k {
	case '"':
		return "a string"
	case '0':
		return "a number"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "malformed input"
}

func (s *jsonSource) beginObject() error { return s.expect('{', "an object") }
func (s *jsonSource) beginArray() error  { return s.expect('[', "an array") }

func (s *jsonSource) member() ([]byte, bool, error) {
	k, err := s.peek()
	if err != nil {
		return nil, false, err
	}
	if k == '}' {
		_, err := s.dec.ReadToken()
		return nil, false, err
	}
	v, err := s.dec.ReadValue()
	if err != nil {
		return nil, false, syntax(err)
	}
	return s.unquote(v), true, nil
}

func (s *jsonSource) elem() (bool, error) {
	k, err := s.peek()
	if err != nil {
		return false, err
	}
	if k == ']' {
		_, err := s.dec.ReadToken()
		return false, err
	}
	return true, nil
}

// unquote returns the content of a valid JSON string value.
func (s *jsonSource) unquote(v jsontext.Value) []byte {
	if bytes.IndexByte(v, '\\') < 0 {
		return v[1 : len(v)-1]
	}
	s.scratch, _ = jsontext.AppendUnquote(s.scratch[:0], v)
	return s.scratch
}

// value reads the next value, which must be of kind.
func (s *jsonSource) value(kind jsontext.Kind, what string) (jsontext.Value, error) {
	k, err := s.peek()
	if err != nil {
		return nil, err
	}
	if k != kind {
		return nil, fmt.Errorf("must be %s, not %s", what, kindName(k))
	}
	v, err := s.dec.ReadValue()
	if err != nil {
		return nil, syntax(err)
	}
	return v, nil
}

func (s *jsonSource) strBytes() ([]byte, error) {
	v, err := s.value('"', "a string")
	if err != nil {
		return nil, err
	}
	return s.unquote(v), nil
}

func (s *jsonSource) str() (string, error) {
	b, err := s.strBytes()
	return string(b), err
}

func (s *jsonSource) integer() (int64, error) {
	v, err := s.value('0', "an integer")
	if err != nil {
		return 0, err
	}
	return parseJSONInteger(v)
}

func (s *jsonSource) timeValue() (int64, error) {
	k, err := s.peek()
	if err != nil {
		return 0, err
	}
	if k == '"' {
		str, err := s.strBytes()
		if err != nil {
			return 0, err
		}
		t, ok := parseDecimalTime(str)
		if !ok {
			return 0, errors.New("must be Unix nanoseconds as an integer or a decimal string without sign, point or leading zeros")
		}
		return t, nil
	}
	if k != '0' {
		return 0, fmt.Errorf("must be Unix nanoseconds as an integer or a decimal string, not %s", kindName(k))
	}
	return s.integer()
}

// parseJSONInteger parses a JSON number that must be an exact integer
// within int64. As in JSON Schema, 1.0 and 1e3 are integers.
//
// It works on the digits alone, in time linear in len(raw) and without
// allocating: an exponent such as 1e999999 costs nothing (math/big would
// compute 10^999999 first).
func parseJSONInteger(raw []byte) (int64, error) {
	neg := len(raw) > 0 && raw[0] == '-'
	if neg {
		raw = raw[1:]
	}
	if len(raw) <= 19 && !bytes.ContainsAny(raw, ".eE") {
		// The common case, plain digits: up to 19 digits fit in a uint64.
		var u uint64
		for _, c := range raw {
			u = u*10 + uint64(c-'0')
		}
		return signedInt(u, neg)
	}
	// Split into integer digits, fraction digits and exponent.
	i := 0
	for i < len(raw) && isDigit(raw[i]) {
		i++
	}
	intPart := raw[:i]
	var frac []byte
	if i < len(raw) && raw[i] == '.' {
		j := i + 1
		for j < len(raw) && isDigit(raw[j]) {
			j++
		}
		frac = raw[i+1 : j]
		i = j
	}
	exp := 0
	if i < len(raw) && (raw[i] == 'e' || raw[i] == 'E') {
		i++
		expNeg := false
		if i < len(raw) && (raw[i] == '+' || raw[i] == '-') {
			expNeg = raw[i] == '-'
			i++
		}
		if i == len(raw) {
			return 0, errors.New("must be an integer")
		}
		for ; i < len(raw) && isDigit(raw[i]); i++ {
			if exp < 1<<30 { // saturate: any larger exponent decides alike
				exp = exp*10 + int(raw[i]-'0')
			}
		}
		if expNeg {
			exp = -exp
		}
	}
	if len(intPart) == 0 || i != len(raw) {
		return 0, errors.New("must be an integer")
	}
	// The value is the digits of intPart and frac times 10^(exp-len(frac)).
	// Drop leading zeros; a value that is all zeros is 0 whatever exp is.
	exp -= len(frac)
	for len(intPart) > 0 && intPart[0] == '0' {
		intPart = intPart[1:]
	}
	if len(intPart) == 0 {
		for len(frac) > 0 && frac[0] == '0' {
			frac = frac[1:]
		}
	}
	// Drop trailing zeros into the exponent.
	for len(frac) > 0 && frac[len(frac)-1] == '0' {
		frac = frac[:len(frac)-1]
		exp++
	}
	if len(frac) == 0 {
		for len(intPart) > 0 && intPart[len(intPart)-1] == '0' {
			intPart = intPart[:len(intPart)-1]
			exp++
		}
	}
	n := len(intPart) + len(frac)
	if n == 0 {
		return 0, nil
	}
	if exp < 0 {
		// The significant digits end in a non-zero digit after the point.
		return 0, errors.New("must be an integer, not a fraction")
	}
	if n+exp > 19 {
		return 0, errors.New("integer is out of range")
	}
	var u uint64 // at most 19 digits: no overflow
	for _, c := range intPart {
		u = u*10 + uint64(c-'0')
	}
	for _, c := range frac {
		u = u*10 + uint64(c-'0')
	}
	for range exp {
		u *= 10
	}
	return signedInt(u, neg)
}

// signedInt returns u, negated when neg, if the result fits an int64.
func signedInt(u uint64, neg bool) (int64, error) {
	if neg {
		if u > 1<<63 {
			return 0, errors.New("integer is out of range")
		}
		return -int64(u), nil // -(1<<63) wraps to itself, which is right
	}
	if u > math.MaxInt64 {
		return 0, errors.New("integer is out of range")
	}
	return int64(u), nil
}

func (s *jsonSource) stats() (Stats, error) {
	k, err := s.peek()
	if err != nil {
		return Stats{}, err
	}
	if k == 'n' {
		_, err := s.dec.ReadToken()
		return Stats{}, err
	}
	if err := s.beginObject(); err != nil {
		return Stats{}, err
	}
	b := &s.sb
	b.begin()
	for {
		name, ok, err := s.member()
		if err != nil {
			return Stats{}, err
		}
		if !ok {
			return b.done(), nil
		}
		if err := b.name(name, true); err != nil {
			return Stats{}, err
		}
		k, err := s.peek()
		if err != nil {
			return Stats{}, err
		}
		switch k {
		case '"':
			v, err := s.strBytes()
			if err != nil {
				return Stats{}, err
			}
			if err := b.str(v, true); err != nil {
				return Stats{}, err
			}
		case '0':
			v, err := s.dec.ReadValue()
			if err != nil {
				return Stats{}, syntax(err)
			}
			if err := b.number(v); err != nil {
				return Stats{}, err
			}
		case 't', 'f', 'n':
			v, err := s.dec.ReadValue()
			if err != nil {
				return Stats{}, syntax(err)
			}
			b.buf = append(b.buf, v...)
		default:
			return Stats{}, fieldError{b.lastName(), "must be a string, number, boolean or null, not " + kindName(k)}
		}
	}
}

func (s *jsonSource) end() error {
	_, err := s.dec.ReadToken()
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return syntax(err)
	}
	return errors.New("invalid JSON: data after the event object")
}

// jsonSink writes an event as compact JSON.
type jsonSink struct {
	buf   []byte
	first bool // no member or element written yet in the current container
}

func (w *jsonSink) sep() {
	if !w.first {
		w.buf = append(w.buf, ',')
	}
	w.first = false
}

func (w *jsonSink) beginObject(int) { w.sep(); w.buf = append(w.buf, '{'); w.first = true }
func (w *jsonSink) endObject()      { w.buf = append(w.buf, '}'); w.first = false }
func (w *jsonSink) beginArray(int)  { w.sep(); w.buf = append(w.buf, '['); w.first = true }
func (w *jsonSink) endArray()       { w.buf = append(w.buf, ']'); w.first = false }

func (w *jsonSink) name(n string) {
	w.sep()
	w.buf, _ = jsontext.AppendQuote(w.buf, n)
	w.buf = append(w.buf, ':')
	w.first = true // the value follows without a comma
}

func (w *jsonSink) str(v string) {
	w.sep()
	w.buf, _ = jsontext.AppendQuote(w.buf, v)
}

func (w *jsonSink) int(v int64) {
	w.sep()
	w.buf = appendInt(w.buf, v)
}

func (w *jsonSink) stats(s Stats) error {
	w.sep()
	w.buf = s.AppendJSON(w.buf)
	return nil
}
