package event

import (
	"errors"
	"unicode/utf8"
)

// scanSource is the fast path of JSON decoding: it reads the JSON that
// writers send — strings without escapes, valid UTF-8, well-formed
// numbers — straight from the message bytes, without jsontext's general
// tokenizer, about a quarter faster on a typical event
// (BenchmarkScanSource). It accepts only
// well-formed JSON and gives the decoder the same tokens jsonSource
// would; on anything else (an escape, a control character, invalid UTF-8,
// a syntax error) it fails, and so does any check the decoder makes: the
// Decoder then reads the message again with jsonSource, whose verdict and
// error text are the reference. So every message decodes to the event,
// or fails with the reason, jsonSource gives (FuzzScanSource checks it).
type scanSource struct {
	data  []byte
	pos   int
	first [maxScanDepth]bool // per open container: no member or element read yet
	depth int
	sb    statsBuilder
}

// maxScanDepth bounds the containers open at once (event, add/remove,
// file, plan); the decoder never nests deeper.
const maxScanDepth = 8

// errScan means the fast path gives up; the caller decodes with
// jsonSource.
var errScan = errors.New("not on the fast path")

func (s *scanSource) reset(data []byte) {
	s.data, s.pos, s.depth = data, 0, 0
}

// next skips whitespace and returns the next byte, or 0 at the end.
func (s *scanSource) next() byte {
	for s.pos < len(s.data) {
		switch c := s.data[s.pos]; c {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return c
		}
	}
	return 0
}

// open consumes the byte c starting a container.
func (s *scanSource) open(c byte) error {
	if s.next() != c || s.depth == maxScanDepth {
		return errScan
	}
	s.pos++
	s.first[s.depth] = true
	s.depth++
	return nil
}

// more consumes the separator before the next member or element of the
// open container, or its closing byte c (then it reports false).
func (s *scanSource) more(c byte) (bool, error) {
	if s.depth == 0 {
		return false, errScan
	}
	b := s.next()
	if b == c {
		s.pos++
		s.depth--
		return false, nil
	}
	if s.first[s.depth-1] {
		s.first[s.depth-1] = false
		return true, nil
	}
	if b != ',' {
		return false, errScan
	}
	s.pos++
	return true, nil
}

func (s *scanSource) beginObject() error { return s.open('{') }
func (s *scanSource) beginArray() error  { return s.open('[') }

func (s *scanSource) member() ([]byte, bool, error) {
	more, err := s.more('}')
	if !more || err != nil {
		return nil, false, err
	}
	return s.name()
}

// name reads a member name and its colon.
func (s *scanSource) name() ([]byte, bool, error) {
	name, err := s.strBytes()
	if err != nil {
		return nil, false, err
	}
	if s.next() != ':' {
		return nil, false, errScan
	}
	s.pos++
	return name, true, nil
}

func (s *scanSource) elem() (bool, error) { return s.more(']') }

// strBytes reads a string without escapes or control characters, in
// valid UTF-8; the bytes are the message's own.
func (s *scanSource) strBytes() ([]byte, error) {
	if s.next() != '"' {
		return nil, errScan
	}
	start := s.pos + 1
	ascii := true
	for i := start; i < len(s.data); i++ {
		switch c := s.data[i]; {
		case c == '"':
			v := s.data[start:i]
			if !ascii && !utf8.Valid(v) {
				return nil, errScan
			}
			s.pos = i + 1
			return v, nil
		case c == '\\' || c < 0x20:
			return nil, errScan
		case c >= 0x80:
			ascii = false
		}
	}
	return nil, errScan
}

func (s *scanSource) str() (string, error) {
	b, err := s.strBytes()
	return string(b), err
}

// number reads a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanSource) number() ([]byte, error) {
	d := s.data
	start := s.pos
	i := start
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i++; i < len(d) && isDigit(d[i]); i++ {
		}
	default:
		return nil, errScan
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i == len(d) || !isDigit(d[i]) {
			return nil, errScan
		}
		for ; i < len(d) && isDigit(d[i]); i++ {
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i == len(d) || !isDigit(d[i]) {
			return nil, errScan
		}
		for ; i < len(d) && isDigit(d[i]); i++ {
		}
	}
	s.pos = i
	return d[start:i], nil
}

func (s *scanSource) integer() (int64, error) {
	s.next()
	raw, err := s.number()
	if err != nil {
		return 0, err
	}
	return parseJSONInteger(raw)
}

func (s *scanSource) timeValue() (int64, error) {
	if s.next() != '"' {
		return s.integer()
	}
	str, err := s.strBytes()
	if err != nil {
		return 0, err
	}
	t, ok := parseDecimalTime(str)
	if !ok {
		return 0, errScan
	}
	return t, nil
}

// literal consumes lit (true, false or null) if it comes next.
func (s *scanSource) literal(lit string) bool {
	if len(s.data)-s.pos < len(lit) || string(s.data[s.pos:s.pos+len(lit)]) != lit {
		return false
	}
	s.pos += len(lit)
	return true
}

func (s *scanSource) stats() (Stats, error) {
	if s.next() == 'n' {
		if !s.literal("null") {
			return Stats{}, errScan
		}
		return Stats{}, nil
	}
	if err := s.open('{'); err != nil {
		return Stats{}, err
	}
	b := &s.sb
	b.begin()
	for {
		more, err := s.more('}')
		if err != nil {
			return Stats{}, err
		}
		if !more {
			return b.done(), nil
		}
		name, _, err := s.name()
		if err != nil {
			return Stats{}, err
		}
		if err := b.name(name, true); err != nil {
			return Stats{}, err
		}
		switch c := s.next(); {
		case c == '"':
			v, err := s.strBytes()
			if err != nil {
				return Stats{}, err
			}
			if err := b.str(v, true); err != nil {
				return Stats{}, err
			}
		case c == '-' || isDigit(c):
			v, err := s.number()
			if err != nil {
				return Stats{}, err
			}
			if err := b.number(v); err != nil {
				return Stats{}, err
			}
		default:
			start := s.pos
			if !s.literal("true") && !s.literal("false") && !s.literal("null") {
				return Stats{}, errScan
			}
			b.buf = append(b.buf, s.data[start:s.pos]...)
		}
	}
}

func (s *scanSource) end() error {
	if s.next() != 0 || s.pos != len(s.data) {
		return errScan
	}
	return nil
}
