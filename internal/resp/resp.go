// Package resp reads raw RESP2 and RESP3 replies, as go-redis's
// RawWriteToCmd hands them over, without copying the strings out of the
// reply: for replies so large and frequent that go-redis's generic
// parsing (one allocation per string) costs the worker more than the
// command (its XREADGROUP of a batch). Raw commands bypass go-redis's
// handling of error replies: a MOVED, ASK, LOADING or READONLY reply
// reaches the caller as an Error, not as a redirect or a retry.
package resp

import (
	"errors"
	"fmt"
	"strconv"
)

// Error is an error reply of the server. It is a redis.Error (it has
// RedisError), so redis.HasErrorPrefix and the workers' error classes see
// it as go-redis's own.
type Error string

func (e Error) Error() string { return string(e) }

// RedisError marks Error as a redis.Error.
func (Error) RedisError() {}

// ErrMalformed is a reply this reader does not understand.
var ErrMalformed = errors.New("resp: malformed reply")

// Reader reads one raw reply. Strings it returns point into the reply.
type Reader struct {
	b   []byte
	off int
}

// NewReader reads the raw reply b.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// Header reads the type byte and the length of the next element: bulk
// strings, arrays, sets and maps give their length (a map the number of
// its pairs); a null (RESP3 "_", or a RESP2 null bulk string or array)
// gives -1. An error reply is returned as an Error.
func (r *Reader) Header() (byte, int, error) {
	line, err := r.line()
	if err != nil {
		return 0, 0, err
	}
	typ := line[0]
	switch typ {
	case '-', '!':
		return 0, 0, Error(line[1:])
	case '_':
		return typ, -1, nil
	case '$', '*', '%', '~':
		n, err := strconv.Atoi(string(line[1:]))
		if err != nil || n < -1 {
			return 0, 0, fmt.Errorf("%w: length %q", ErrMalformed, line)
		}
		return typ, n, nil
	}
	return 0, 0, fmt.Errorf("%w: unexpected %q", ErrMalformed, line)
}

// line returns the next CRLF-terminated line, without the CRLF.
func (r *Reader) line() ([]byte, error) {
	for i := r.off; i+1 < len(r.b); i++ {
		if r.b[i] == '\r' && r.b[i+1] == '\n' {
			line := r.b[r.off:i]
			r.off = i + 2
			if len(line) == 0 {
				return nil, fmt.Errorf("%w: empty line", ErrMalformed)
			}
			return line, nil
		}
	}
	return nil, fmt.Errorf("%w: truncated", ErrMalformed)
}

// Bulk reads a bulk string; ok is false for a null.
func (r *Reader) Bulk() (b []byte, ok bool, err error) {
	typ, n, err := r.Header()
	switch {
	case err != nil:
		return nil, false, err
	case n < 0:
		return nil, false, nil
	case typ != '$':
		return nil, false, fmt.Errorf("%w: %c where a string was expected", ErrMalformed, typ)
	case r.off+n+2 > len(r.b):
		return nil, false, fmt.Errorf("%w: truncated string", ErrMalformed)
	}
	b = r.b[r.off : r.off+n : r.off+n]
	r.off += n + 2
	return b, true, nil
}

// Aggregate reads the header of an array (or set) of n elements; n is -1
// for a null.
func (r *Reader) Aggregate() (int, error) {
	typ, n, err := r.Header()
	if err != nil {
		return 0, err
	}
	if n >= 0 && typ != '*' && typ != '~' {
		return 0, fmt.Errorf("%w: %c where an array was expected", ErrMalformed, typ)
	}
	return n, nil
}
