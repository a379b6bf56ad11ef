package event

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// msgpackSource reads an event from msgpack with the decoder's primitives,
// checking every type code itself: the library's typed decoders convert
// between kinds (a float to an int, nil to ""), which would hide bad input.
type msgpackSource struct {
	r       bytes.Reader
	dec     *msgpack.Decoder
	open    []int // remaining entries of each open map or array
	scratch []byte
	sb      statsBuilder
}

func newMsgpackSource() *msgpackSource {
	s := &msgpackSource{}
	s.dec = msgpack.NewDecoder(&s.r)
	return s
}

func (s *msgpackSource) reset(data []byte) {
	s.r.Reset(data)
	s.dec.Reset(&s.r)
	s.open = s.open[:0]
}

func badMsgpack(err error) error {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("invalid msgpack: unexpected end of input")
	}
	return errors.New("invalid msgpack: " + strings.TrimPrefix(err.Error(), "msgpack: "))
}

func (s *msgpackSource) peek() (byte, error) {
	c, err := s.dec.PeekCode()
	if err != nil {
		return 0, badMsgpack(err)
	}
	return c, nil
}

func codeName(c byte) string {
	switch {
	case msgpcode.IsString(c):
		return "a string"
	case msgpcode.IsFixedNum(c), c >= msgpcode.Uint8 && c <= msgpcode.Int64, c == msgpcode.Float, c == msgpcode.Double:
		return "a number"
	case msgpcode.IsFixedMap(c), c == msgpcode.Map16, c == msgpcode.Map32:
		return "an object"
	case msgpcode.IsFixedArray(c), c == msgpcode.Array16, c == msgpcode.Array32:
		return "an array"
	case c == msgpcode.True, c == msgpcode.False:
		return "a boolean"
	case c == msgpcode.Nil:
		return "null"
	case msgpcode.IsBin(c):
		return "binary data"
	case msgpcode.IsExt(c):
		return "an extension value"
	}
	return "malformed input"
}

func isInt(c byte) bool {
	return msgpcode.IsFixedNum(c) || c >= msgpcode.Uint8 && c <= msgpcode.Int64
}

func (s *msgpackSource) beginObject() error {
	c, err := s.peek()
	if err != nil {
		return err
	}
	if !(msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32) {
		return fmt.Errorf("must be an object, not %s", codeName(c))
	}
	n, err := s.dec.DecodeMapLen()
	if err != nil {
		return badMsgpack(err)
	}
	s.open = append(s.open, n)
	return nil
}

func (s *msgpackSource) beginArray() error {
	c, err := s.peek()
	if err != nil {
		return err
	}
	if !(msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32) {
		return fmt.Errorf("must be an array, not %s", codeName(c))
	}
	n, err := s.dec.DecodeArrayLen()
	if err != nil {
		return badMsgpack(err)
	}
	s.open = append(s.open, n)
	return nil
}

// next consumes one entry of the innermost open container, reporting false
// (and closing it) when none is left.
func (s *msgpackSource) next() bool {
	top := len(s.open) - 1
	if s.open[top] == 0 {
		s.open = s.open[:top]
		return false
	}
	s.open[top]--
	return true
}

func (s *msgpackSource) member() ([]byte, bool, error) {
	if !s.next() {
		return nil, false, nil
	}
	b, err := s.rawString("member name")
	return b, err == nil, err
}

func (s *msgpackSource) elem() (bool, error) { return s.next(), nil }

// rawString reads a str value into scratch; valid until the next call.
func (s *msgpackSource) rawString(what string) ([]byte, error) {
	c, err := s.peek()
	if err != nil {
		return nil, err
	}
	if !msgpcode.IsString(c) {
		return nil, fmt.Errorf("%s must be a string, not %s", what, codeName(c))
	}
	n, err := s.dec.DecodeBytesLen()
	if err != nil {
		return nil, badMsgpack(err)
	}
	if n > s.r.Len() {
		return nil, badMsgpack(nil)
	}
	s.scratch = slices.Grow(s.scratch[:0], n)[:n]
	if err := s.dec.ReadFull(s.scratch); err != nil {
		return nil, badMsgpack(err)
	}
	if !utf8.Valid(s.scratch) {
		return nil, errors.New("string is not valid UTF-8")
	}
	return s.scratch, nil
}

func (s *msgpackSource) strBytes() ([]byte, error) {
	b, err := s.rawString("value")
	if err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "value "))
	}
	return b, nil
}

func (s *msgpackSource) str() (string, error) {
	b, err := s.strBytes()
	return string(b), err
}

func (s *msgpackSource) integer() (int64, error) {
	c, err := s.peek()
	if err != nil {
		return 0, err
	}
	switch {
	case c == msgpcode.Uint64:
		v, err := s.dec.DecodeUint64()
		if err != nil {
			return 0, badMsgpack(err)
		}
		if v > math.MaxInt64 {
			return 0, errors.New("integer is out of range")
		}
		return int64(v), nil
	case isInt(c):
		v, err := s.dec.DecodeInt64()
		if err != nil {
			return 0, badMsgpack(err)
		}
		return v, nil
	case c == msgpcode.Float || c == msgpcode.Double:
		// As in JSON Schema, 1.0 is an integer.
		f, err := s.dec.DecodeFloat64()
		if err != nil {
			return 0, badMsgpack(err)
		}
		if f != math.Trunc(f) || math.IsInf(f, 0) {
			return 0, errors.New("must be an integer, not a fraction")
		}
		if f < -(1<<63) || f >= 1<<63 {
			return 0, errors.New("integer is out of range")
		}
		return int64(f), nil
	}
	return 0, fmt.Errorf("must be an integer, not %s", codeName(c))
}

func (s *msgpackSource) timeValue() (int64, error) {
	c, err := s.peek()
	if err != nil {
		return 0, err
	}
	if msgpcode.IsString(c) {
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
	return s.integer()
}

func (s *msgpackSource) stats() (Stats, error) {
	c, err := s.peek()
	if err != nil {
		return Stats{}, err
	}
	if c == msgpcode.Nil {
		return Stats{}, s.dec.DecodeNil()
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
		// rawString checked the name's UTF-8.
		if err := b.name(name, true); err != nil {
			return Stats{}, err
		}
		if err := s.statsValue(b); err != nil {
			return Stats{}, err
		}
	}
}

func (s *msgpackSource) statsValue(b *statsBuilder) error {
	c, err := s.peek()
	if err != nil {
		return err
	}
	switch {
	case msgpcode.IsString(c):
		v, err := s.strBytes()
		if err != nil {
			return fieldError{b.lastName(), err.Error()}
		}
		return b.str(v, true)
	case c == msgpcode.Uint64:
		v, err := s.dec.DecodeUint64()
		if err != nil {
			return badMsgpack(err)
		}
		b.uint(v)
	case isInt(c):
		v, err := s.dec.DecodeInt64()
		if err != nil {
			return badMsgpack(err)
		}
		b.int(v)
	case c == msgpcode.Float:
		v, err := s.dec.DecodeFloat32()
		if err != nil {
			return badMsgpack(err)
		}
		return b.float(float64(v), 32)
	case c == msgpcode.Double:
		v, err := s.dec.DecodeFloat64()
		if err != nil {
			return badMsgpack(err)
		}
		return b.float(v, 64)
	case c == msgpcode.True || c == msgpcode.False:
		v, err := s.dec.DecodeBool()
		if err != nil {
			return badMsgpack(err)
		}
		if v {
			b.buf = append(b.buf, "true"...)
		} else {
			b.buf = append(b.buf, "false"...)
		}
	case c == msgpcode.Nil:
		if err := s.dec.DecodeNil(); err != nil {
			return badMsgpack(err)
		}
		b.buf = append(b.buf, "null"...)
	default:
		return fieldError{b.lastName(), "must be a string, number, boolean or null, not " + codeName(c)}
	}
	return nil
}

func (s *msgpackSource) end() error {
	if s.r.Len() != 0 {
		return errors.New("invalid msgpack: data after the event map")
	}
	return nil
}

// msgpackSink writes an event as msgpack.
type msgpackSink struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

func newMsgpackSink() *msgpackSink {
	w := &msgpackSink{}
	w.enc = msgpack.NewEncoder(&w.buf)
	return w
}

// Writes to a bytes.Buffer cannot fail, so encoder errors are impossible.
func (w *msgpackSink) beginObject(n int) { _ = w.enc.EncodeMapLen(n) }
func (w *msgpackSink) endObject()        {}
func (w *msgpackSink) beginArray(n int)  { _ = w.enc.EncodeArrayLen(n) }
func (w *msgpackSink) endArray()         {}
func (w *msgpackSink) name(n string)     { _ = w.enc.EncodeString(n) }
func (w *msgpackSink) str(v string)      { _ = w.enc.EncodeString(v) }
func (w *msgpackSink) int(v int64)       { _ = w.enc.EncodeInt(v) }

// stats writes the columns as a map, each JSON value as its msgpack kind.
func (w *msgpackSink) stats(s Stats) error {
	if s.IsZero() {
		return w.enc.EncodeNil()
	}
	if err := w.enc.EncodeMapLen(s.Len()); err != nil {
		return err
	}
	return s.each(func(name string, v jsontext.Value) error {
		if err := w.enc.EncodeString(name); err != nil {
			return err
		}
		switch v.Kind() {
		case '"':
			u, err := jsontext.AppendUnquote(nil, v)
			if err != nil {
				return err
			}
			return w.enc.EncodeString(string(u))
		case 'n':
			return w.enc.EncodeNil()
		case 't', 'f':
			return w.enc.EncodeBool(v.Kind() == 't')
		default:
			return encodeNumber(w.enc, string(v))
		}
	})
}
