package event

import (
	"strconv"

	"github.com/vmihailenco/msgpack/v5"
)

// sink is what the shared encoder writes to: JSON text or msgpack. Counts
// passed to begin* are exact; JSON ignores them.
type sink interface {
	beginObject(n int)
	endObject()
	beginArray(n int)
	endArray()
	name(string)
	str(string)
	int(int64)
	stats(Stats) error
}

// Encode validates e with the default Config and returns its encoding
// in format f; see Decoder.Encode.
func Encode(f Format, e *Event) ([]byte, error) { return defaultDecoder.Encode(f, e) }

// Encode validates e as d.Validate does and returns its encoding in
// format f, or a *ValidationError: the first rule e breaks, or an
// encoding longer than d's MaxMessageBytes (which d.Decode would refuse).
// Decoding the result with d gives back e.
func (d *Decoder) Encode(f Format, e *Event) ([]byte, error) {
	if err := d.Validate(e); err != nil {
		return nil, err
	}
	var b []byte
	var err error
	switch f {
	case JSON:
		b, err = AppendJSON(nil, e)
	case MsgPack:
		b, err = AppendMsgpack(nil, e)
	default:
		return nil, invalid("", "unknown format %d", f)
	}
	if err != nil {
		return nil, err
	}
	if len(b) > d.maxBytes {
		return nil, tooLong(len(b), d.maxBytes)
	}
	return b, nil
}

// AppendJSON appends the JSON encoding of e to dst. It does not validate e.
func AppendJSON(dst []byte, e *Event) ([]byte, error) {
	w := jsonSink{buf: dst, first: true}
	if err := encodeEvent(&w, e); err != nil {
		return dst, err
	}
	return w.buf, nil
}

// AppendMsgpack appends the msgpack encoding of e to dst. It does not
// validate e.
func AppendMsgpack(dst []byte, e *Event) ([]byte, error) {
	w := newMsgpackSink()
	w.buf.Write(dst)
	if err := encodeEvent(w, e); err != nil {
		return dst, err
	}
	return w.buf.Bytes(), nil
}

// encodeEvent writes the fields of e in schema order. Fields that are
// optional for the event's type are written only when set, so decoding the
// output gives back e.
func encodeEvent(w sink, e *Event) error {
	n := 6
	switch e.Type {
	case FilesReplaced:
		n += 2
		if e.Plan != nil {
			n++
		}
	default:
		n += fileFieldCount(&e.File, e.Type == FileCreated)
	}
	w.beginObject(n)
	w.name("v")
	w.int(Version)
	w.name("id")
	w.str(e.ID)
	w.name("type")
	w.str(string(e.Type))
	w.name("time")
	w.int(e.Time)
	w.name("database")
	w.str(e.Database)
	w.name("table")
	w.str(e.Table)
	var err error
	switch e.Type {
	case FilesReplaced:
		w.name("add")
		err = encodeFiles(w, e.Add, true)
		if err == nil {
			w.name("remove")
			err = encodeFiles(w, e.Remove, false)
		}
		if err == nil && e.Plan != nil {
			w.name("plan")
			w.beginObject(3)
			w.name("kind")
			w.str(string(e.Plan.Kind))
			w.name("id")
			w.str(e.Plan.ID)
			w.name("token")
			w.str(e.Plan.Token)
			w.endObject()
		}
	default:
		err = encodeFileFields(w, &e.File, e.Type == FileCreated)
	}
	w.endObject()
	return err
}

func encodeFiles(w sink, files []File, full bool) error {
	w.beginArray(len(files))
	for i := range files {
		w.beginObject(fileFieldCount(&files[i], full))
		if err := encodeFileFields(w, &files[i], full); err != nil {
			return err
		}
		w.endObject()
	}
	w.endArray()
	return nil
}

// fileFieldCount counts the fields encodeFileFields writes.
func fileFieldCount(f *File, full bool) int {
	n := 2 // layer, path
	for _, set := range [...]bool{
		f.WriterID != "", full || f.SizeBytes != 0, full || f.RowCount != 0,
		full || f.ChunkTime != 0, full || f.MinTime != 0, full || f.MaxTime != 0,
		!f.Min.IsZero(), !f.Max.IsZero(),
	} {
		if set {
			n++
		}
	}
	return n
}

// encodeFileFields writes the file's fields; full writes every numeric
// field (they are required of files that become live).
func encodeFileFields(w sink, f *File, full bool) error {
	w.name("layer")
	w.str(f.Layer)
	if f.WriterID != "" {
		w.name("writer_id")
		w.str(f.WriterID)
	}
	w.name("path")
	w.str(f.Path)
	for _, num := range [...]struct {
		name string
		v    int64
	}{
		{"size_bytes", f.SizeBytes}, {"row_count", f.RowCount}, {"chunk_time", f.ChunkTime},
		{"min_time", f.MinTime}, {"max_time", f.MaxTime},
	} {
		if full || num.v != 0 {
			w.name(num.name)
			w.int(num.v)
		}
	}
	for _, st := range [...]struct {
		name string
		v    Stats
	}{{"min", f.Min}, {"max", f.Max}} {
		if !st.v.IsZero() {
			w.name(st.name)
			if err := w.stats(st.v); err != nil {
				return err
			}
		}
	}
	return nil
}

func appendInt(dst []byte, v int64) []byte { return strconv.AppendInt(dst, v, 10) }

// encodeNumber writes a canonical JSON number as the msgpack kind that
// decodes back to the same text: an integer when it is one, else a float.
func encodeNumber(enc *msgpack.Encoder, text string) error {
	if v, err := strconv.ParseInt(text, 10, 64); err == nil {
		return enc.EncodeInt(v)
	}
	if v, err := strconv.ParseUint(text, 10, 64); err == nil {
		return enc.EncodeUint(v)
	}
	v, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return err
	}
	return enc.EncodeFloat64(v)
}
