package redisstream

import (
	"errors"
	"fmt"
	"strconv"
)

// entry is one stream entry as Redis sent it: its fields in order,
// duplicates included (go-redis's XMessage keeps them in a map, where a
// second "data" silently replaces the first). Field names and values may
// point into the reply's buffer.
type entry struct {
	id string
	// fields alternates names and values; nil when the entry's payload was
	// deleted from the stream.
	fields  [][]byte
	deleted bool
}

// replyError is an error reply of the server, matched by
// redis.HasErrorPrefix and consumer.Classify as go-redis's own.
type replyError string

func (e replyError) Error() string { return string(e) }

// RedisError marks replyError as a redis.Error.
func (replyError) RedisError() {}

// errMalformed is a reply this parser does not understand.
var errMalformed = errors.New("redisstream: malformed reply")

// resp reads a raw RESP2 or RESP3 reply.
type resp struct {
	b   []byte
	off int
}

// header reads the type byte and the length of the next element: bulk
// strings, arrays, sets and maps give their length (a map the number of
// its pairs); a null (RESP3 "_", or a RESP2 null bulk string or array)
// gives -1. An error reply is returned as a replyError.
func (r *resp) header() (byte, int, error) {
	line, err := r.line()
	if err != nil {
		return 0, 0, err
	}
	typ := line[0]
	switch typ {
	case '-', '!':
		return 0, 0, replyError(line[1:])
	case '_':
		return typ, -1, nil
	case '$', '*', '%', '~':
		n, err := strconv.Atoi(string(line[1:]))
		if err != nil || n < -1 {
			return 0, 0, fmt.Errorf("%w: length %q", errMalformed, line)
		}
		return typ, n, nil
	}
	return 0, 0, fmt.Errorf("%w: unexpected %q", errMalformed, line)
}

// line returns the next CRLF-terminated line, without the CRLF.
func (r *resp) line() ([]byte, error) {
	for i := r.off; i+1 < len(r.b); i++ {
		if r.b[i] == '\r' && r.b[i+1] == '\n' {
			line := r.b[r.off:i]
			r.off = i + 2
			if len(line) == 0 {
				return nil, fmt.Errorf("%w: empty line", errMalformed)
			}
			return line, nil
		}
	}
	return nil, fmt.Errorf("%w: truncated", errMalformed)
}

// bulk reads a bulk string; ok is false for a null.
func (r *resp) bulk() (b []byte, ok bool, err error) {
	typ, n, err := r.header()
	switch {
	case err != nil:
		return nil, false, err
	case n < 0:
		return nil, false, nil
	case typ != '$':
		return nil, false, fmt.Errorf("%w: %c where a string was expected", errMalformed, typ)
	case r.off+n+2 > len(r.b):
		return nil, false, fmt.Errorf("%w: truncated string", errMalformed)
	}
	b = r.b[r.off : r.off+n : r.off+n]
	r.off += n + 2
	return b, true, nil
}

// aggregate reads the header of an array (or set) of n elements; n is -1
// for a null.
func (r *resp) aggregate() (int, error) {
	typ, n, err := r.header()
	if err != nil {
		return 0, err
	}
	if n >= 0 && typ != '*' && typ != '~' {
		return 0, fmt.Errorf("%w: %c where an array was expected", errMalformed, typ)
	}
	return n, nil
}

// parseReadGroup parses the raw reply of an XREADGROUP of one stream: its
// entries in order, with fields (names and values) pointing into raw. A
// null reply (nothing came within BLOCK) gives none.
func parseReadGroup(raw []byte) ([]entry, error) {
	r := resp{b: raw}
	typ, n, err := r.header()
	switch {
	case err != nil:
		return nil, err
	case n <= 0:
		return nil, nil
	case n != 1 || (typ != '*' && typ != '%'):
		return nil, fmt.Errorf("%w: %d streams in an XREADGROUP of one", errMalformed, n)
	}
	if typ == '*' { // RESP2: [[name, entries]]; RESP3: {name: entries}
		if k, err := r.aggregate(); err != nil || k != 2 {
			return nil, fmt.Errorf("%w: stream element of %d (%v)", errMalformed, k, err)
		}
	}
	if _, _, err := r.bulk(); err != nil { // the stream's name
		return nil, err
	}
	return r.entries()
}

// entries reads an array of stream entries, [id, [field, value, …] or
// null], as XREADGROUP and XRANGE return them.
func (r *resp) entries() ([]entry, error) {
	n, err := r.aggregate()
	if err != nil || n <= 0 {
		return nil, err
	}
	out := make([]entry, n)
	fields := make([][]byte, 0, 4*n) // data and ct, usually: one allocation for all
	for i := range out {
		e := &out[i]
		if k, err := r.aggregate(); err != nil || k != 2 {
			return nil, fmt.Errorf("%w: entry of %d elements (%v)", errMalformed, k, err)
		}
		id, ok, err := r.bulk()
		if err != nil || !ok {
			return nil, fmt.Errorf("%w: entry id (%v)", errMalformed, err)
		}
		e.id = string(id)
		k, err := r.aggregate()
		if err != nil {
			return nil, err
		}
		if k < 0 {
			e.deleted = true
			continue
		}
		start := len(fields)
		for range k {
			f, ok, err := r.bulk()
			if err != nil || !ok {
				return nil, fmt.Errorf("%w: field of entry %s (%v)", errMalformed, e.id, err)
			}
			fields = append(fields, f)
		}
		e.fields = fields[start:len(fields):len(fields)]
	}
	return out, nil
}
