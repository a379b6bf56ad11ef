package redisstream

import (
	"fmt"

	"github.com/streamindex/indexer/internal/resp"
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

// parseReadGroup parses the raw reply of an XREADGROUP of one stream: its
// entries in order, with fields (names and values) pointing into raw. A
// null reply (nothing came within BLOCK) gives none.
func parseReadGroup(raw []byte) ([]entry, error) {
	r := resp.NewReader(raw)
	typ, n, err := r.Header()
	switch {
	case err != nil:
		return nil, err
	case n <= 0:
		return nil, nil
	case n != 1 || (typ != '*' && typ != '%'):
		return nil, fmt.Errorf("%w: %d streams in an XREADGROUP of one", resp.ErrMalformed, n)
	}
	if typ == '*' { // RESP2: [[name, entries]]; RESP3: {name: entries}
		if k, err := r.Aggregate(); err != nil || k != 2 {
			return nil, fmt.Errorf("%w: stream element of %d (%v)", resp.ErrMalformed, k, err)
		}
	}
	if _, _, err := r.Bulk(); err != nil { // the stream's name
		return nil, err
	}
	return entries(r)
}

// entries reads an array of stream entries, [id, [field, value, …] or
// null], as XREADGROUP and XRANGE return them.
func entries(r *resp.Reader) ([]entry, error) {
	n, err := r.Aggregate()
	if err != nil || n <= 0 {
		return nil, err
	}
	out := make([]entry, n)
	fields := make([][]byte, 0, 2*n) // data (and ct for msgpack), usually: one allocation for all
	for i := range out {
		e := &out[i]
		if k, err := r.Aggregate(); err != nil || k != 2 {
			return nil, fmt.Errorf("%w: entry of %d elements (%v)", resp.ErrMalformed, k, err)
		}
		id, ok, err := r.Bulk()
		if err != nil || !ok {
			return nil, fmt.Errorf("%w: entry id (%v)", resp.ErrMalformed, err)
		}
		e.id = string(id)
		k, err := r.Aggregate()
		if err != nil {
			return nil, err
		}
		if k < 0 {
			e.deleted = true
			continue
		}
		start := len(fields)
		for range k {
			f, ok, err := r.Bulk()
			if err != nil || !ok {
				return nil, fmt.Errorf("%w: field of entry %s (%v)", resp.ErrMalformed, e.id, err)
			}
			fields = append(fields, f)
		}
		e.fields = fields[start:len(fields):len(fields)]
	}
	return out, nil
}
