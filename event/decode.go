package event

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// Format is the encoding of a message.
type Format uint8

// The encodings of schema v1.
const (
	JSON Format = iota
	MsgPack
)

// String returns the short name used in the Redis Streams field `ct` and on
// the command line: "json" or "msgpack".
func (f Format) String() string {
	if f == MsgPack {
		return "msgpack"
	}
	return "json"
}

// ContentType returns the MIME type used in the NATS Content-Type header.
func (f Format) ContentType() string {
	if f == MsgPack {
		return "application/msgpack"
	}
	return "application/json"
}

// ParseFormat accepts a short name ("json", "msgpack") or a MIME type
// ("application/json", "application/msgpack", with optional parameters).
// The empty string means JSON, the default of both transports.
func ParseFormat(s string) (Format, error) {
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "json", "application/json":
		return JSON, nil
	case "msgpack", "application/msgpack", "application/x-msgpack", "application/vnd.msgpack":
		return MsgPack, nil
	}
	return 0, &ValidationError{Reason: fmt.Sprintf("unknown content type %q: use json or msgpack", s)}
}

// Config configures a Decoder. The zero value means the defaults.
type Config struct {
	// MaxMessageBytes is the largest message accepted. Default 65536 (64 KiB).
	MaxMessageBytes int
	// Layers is the set of layer names events may use. An event naming
	// another layer is invalid: GigAPI's readers fail a whole query on an
	// unknown layer. Default: nil, any well-formed name.
	Layers []string
	// SingleDate refuses a files.replaced event whose files lie in more
	// than one date (CheckSingleDate). The index's cluster layout needs
	// it: one call, atomic on one hash slot, applies one table's date.
	// Default false.
	SingleDate bool
}

// Decoder decodes and validates messages. It is safe for concurrent use.
type Decoder struct {
	maxBytes   int
	layers     map[string]bool
	singleDate bool
}

// NewDecoder returns a Decoder for cfg, or an error if cfg is invalid.
func NewDecoder(cfg Config) (*Decoder, error) {
	d := &Decoder{maxBytes: cfg.MaxMessageBytes, singleDate: cfg.SingleDate}
	if d.maxBytes == 0 {
		d.maxBytes = DefaultMaxMessageBytes
	}
	if d.maxBytes < 0 {
		return nil, errors.New("event: MaxMessageBytes must not be negative")
	}
	if cfg.Layers != nil {
		d.layers = make(map[string]bool, len(cfg.Layers))
		for _, l := range cfg.Layers {
			if !validName(l) {
				return nil, fmt.Errorf("event: layer %q: %s", l, nameRule)
			}
			d.layers[l] = true
		}
	}
	return d, nil
}

var defaultDecoder, _ = NewDecoder(Config{})

// Decode decodes one message with the default Config.
func Decode(f Format, data []byte) (Event, error) {
	return defaultDecoder.Decode(f, data)
}

// Decode decodes and validates one message. Any failure is a
// *ValidationError. data is not retained.
func (d *Decoder) Decode(f Format, data []byte) (Event, error) {
	var e Event
	if len(data) > d.maxBytes {
		return e, tooLong(len(data), d.maxBytes)
	}
	var err *ValidationError
	switch f {
	case JSON:
		f := scanSources.Get().(*scanSource)
		f.reset(data)
		err = decodeEvent(f, &e)
		f.reset(nil)
		scanSources.Put(f)
		if err != nil { // not on the fast path: jsonSource decides
			e = Event{}
			s := jsonSources.Get().(*jsonSource)
			s.reset(data)
			err = decodeEvent(s, &e)
			s.reset(nil)
			jsonSources.Put(s)
		}
	case MsgPack:
		s := msgpackSources.Get().(*msgpackSource)
		s.reset(data)
		err = decodeEvent(s, &e)
		s.reset(nil)
		msgpackSources.Put(s)
	default:
		return e, invalid("", "unknown format %d", f)
	}
	if err == nil {
		err = validateEvent(&e, d.layers)
	}
	if err == nil && d.singleDate {
		err = checkSingleDate(&e)
	}
	if err != nil {
		return Event{}, err
	}
	return e, nil
}

// tooLong is the error of a message over the size limit.
func tooLong(n, limit int) *ValidationError {
	return invalid("", "message is %d bytes, more than the limit of %d", n, limit)
}

var (
	scanSources    = sync.Pool{New: func() any { return new(scanSource) }}
	jsonSources    = sync.Pool{New: func() any { return newJSONSource() }}
	msgpackSources = sync.Pool{New: func() any { return newMsgpackSource() }}
)

// source is what the shared decoder reads: a JSON token stream or a msgpack
// stream. Every method returns an error whose text is the reason; the decoder
// adds the field. Byte slices returned are valid until the next call.
type source interface {
	// beginObject consumes the start of an object.
	beginObject() error
	// member returns the next member name of the current object, or
	// ok=false after consuming the object's end.
	member() (name []byte, ok bool, err error)
	// beginArray consumes the start of an array.
	beginArray() error
	// elem reports whether another element follows in the current array,
	// consuming the array's end when not.
	elem() (bool, error)
	// str reads a string.
	str() (string, error)
	// strBytes reads a string; the bytes are valid until the next call.
	strBytes() ([]byte, error)
	// integer reads a number that is an exact integer within int64.
	integer() (int64, error)
	// timeValue reads an integer or its decimal-string form.
	timeValue() (int64, error)
	// stats reads a min/max object of scalars, or null.
	stats() (Stats, error)
	// end checks that nothing follows the top-level value.
	end() error
}

// Field bits, for presence and duplicate tracking.
const (
	fV = 1 << iota
	fID
	fType
	fTime
	fDatabase
	fTable
	fAdd
	fRemove
	fLayer
	fWriterID
	fPath
	fSizeBytes
	fRowCount
	fChunkTime
	fMinTime
	fMaxTime
	fMin
	fMax
	fPlan

	fileFields    = fLayer | fWriterID | fPath | fSizeBytes | fRowCount | fChunkTime | fMinTime | fMaxTime | fMin | fMax
	fileRequired  = fLayer | fPath | fSizeBytes | fRowCount | fChunkTime | fMinTime | fMaxTime
	eventRequired = fV | fID | fType | fTime | fDatabase | fTable
)

// fieldNames lists every field with its bit, in the order required fields
// are reported missing.
var fieldNames = [...]struct {
	bit  uint32
	name string
}{
	{fV, "v"}, {fID, "id"}, {fType, "type"}, {fTime, "time"},
	{fDatabase, "database"}, {fTable, "table"},
	{fLayer, "layer"}, {fWriterID, "writer_id"}, {fPath, "path"},
	{fSizeBytes, "size_bytes"}, {fRowCount, "row_count"}, {fChunkTime, "chunk_time"},
	{fMinTime, "min_time"}, {fMaxTime, "max_time"}, {fMin, "min"}, {fMax, "max"},
	{fAdd, "add"}, {fRemove, "remove"}, {fPlan, "plan"},
}

func fieldBit(name []byte) uint32 {
	switch string(name) {
	case "v":
		return fV
	case "id":
		return fID
	case "type":
		return fType
	case "time":
		return fTime
	case "database":
		return fDatabase
	case "table":
		return fTable
	case "add":
		return fAdd
	case "remove":
		return fRemove
	case "layer":
		return fLayer
	case "writer_id":
		return fWriterID
	case "path":
		return fPath
	case "size_bytes":
		return fSizeBytes
	case "row_count":
		return fRowCount
	case "chunk_time":
		return fChunkTime
	case "min_time":
		return fMinTime
	case "max_time":
		return fMaxTime
	case "min":
		return fMin
	case "max":
		return fMax
	case "plan":
		return fPlan
	}
	return 0
}

// bitName names the field of bit.
func bitName(bit uint32) string { return firstIn(bit) }

// fileAt locates a file object: the top level of the event (list == "")
// or element i of the array list ("add", "remove"). It builds field names
// for errors only, so decoding a valid event does not format any.
type fileAt struct {
	list string
	i    int
}

// String returns the location itself: "" or "add[2]".
func (at fileAt) String() string {
	if at.list == "" {
		return ""
	}
	return at.list + "[" + strconv.Itoa(at.i) + "]"
}

// field returns the path of a field of the file: "path" or "add[2].path".
func (at fileAt) field(name string) string {
	if at.list == "" {
		return name
	}
	return at.String() + "." + name
}

// firstIn names the first field whose bit is in bits, or "".
func firstIn(bits uint32) string {
	for _, f := range fieldNames {
		if bits&f.bit != 0 {
			return f.name
		}
	}
	return ""
}

// wrap turns a source error into a ValidationError on field. Errors that
// already name their field pass through; a fieldError names a member of
// field (a min/max column).
func wrap(field string, err error) *ValidationError {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return ve
	}
	var fe fieldError
	if errors.As(err, &fe) {
		if fe.sub == "" { // an empty column name: "min", not "min."
			return &ValidationError{Field: field, Reason: fe.reason}
		}
		if field == "" {
			return &ValidationError{Field: fe.sub, Reason: fe.reason}
		}
		return &ValidationError{Field: field + "." + fe.sub, Reason: fe.reason}
	}
	return &ValidationError{Field: field, Reason: err.Error()}
}

// decodeEvent reads one event from s. It checks structure, types, unknown
// and duplicate fields and presence; validateEvent checks the values.
func decodeEvent(s source, e *Event) *ValidationError {
	if err := s.beginObject(); err != nil {
		return wrap("", err)
	}
	var seen uint32
	for {
		name, ok, err := s.member()
		if err != nil {
			return wrap("", err)
		}
		if !ok {
			break
		}
		bit := fieldBit(name)
		if bit == 0 {
			return invalid(string(name), "unknown field (schema v%d allows v, id, type, time, database, table, the file fields, add, remove and plan)", Version)
		}
		if seen&bit != 0 {
			return invalid(bitName(bit), "duplicate field")
		}
		seen |= bit
		var ferr error
		switch bit {
		case fV:
			var v int64
			if v, ferr = s.integer(); ferr == nil && v != Version {
				return invalid("v", "unsupported schema version %d: this indexer reads version %d", v, Version)
			}
		case fID:
			e.ID, ferr = s.str()
		case fType:
			var t []byte
			if t, ferr = s.strBytes(); ferr == nil {
				// The constants, so that decoding does not allocate them.
				switch Type(t) {
				case FileCreated:
					e.Type = FileCreated
				case FileDeleted:
					e.Type = FileDeleted
				case FilesReplaced:
					e.Type = FilesReplaced
				default:
					return invalid("type", "unknown type %q: must be file.created, file.deleted or files.replaced", t)
				}
			}
		case fTime:
			e.Time, ferr = s.timeValue()
		case fDatabase:
			e.Database, ferr = s.str()
		case fTable:
			e.Table, ferr = s.str()
		case fAdd:
			e.Add, ferr = decodeFiles(s, "add", true)
		case fRemove:
			e.Remove, ferr = decodeFiles(s, "remove", false)
		case fPlan:
			e.Plan, ferr = decodePlan(s)
		default:
			ferr = decodeFileField(s, &e.File, bit)
		}
		if ferr != nil {
			return wrap(bitName(bit), ferr)
		}
	}
	if err := s.end(); err != nil {
		return wrap("", err)
	}
	if missing := firstIn(eventRequired &^ seen); missing != "" {
		return invalid(missing, "required field is missing")
	}
	if seen&fPlan != 0 && e.Type != FilesReplaced {
		return invalid("plan", "only files.replaced events carry a plan")
	}
	switch e.Type {
	case FileCreated, FileDeleted:
		if seen&(fAdd|fRemove) != 0 {
			return invalid(firstIn(seen&(fAdd|fRemove)), "only files.replaced events carry add and remove")
		}
		need := uint32(fileRequired)
		if e.Type == FileDeleted {
			need = fLayer | fPath
		}
		if missing := firstIn(need &^ seen); missing != "" {
			return invalid(missing, "required field of %s is missing", e.Type)
		}
	case FilesReplaced:
		if seen&fileFields != 0 {
			return invalid(firstIn(seen&fileFields), "files.replaced carries its files in add and remove, not at the top level")
		}
		if missing := firstIn((fAdd | fRemove) &^ seen); missing != "" {
			return invalid(missing, "required field of files.replaced is missing")
		}
	}
	return nil
}

// decodeFiles reads an array of file objects. full files (add) need every
// field; others (remove) need layer and path.
func decodeFiles(s source, field string, full bool) ([]File, error) {
	if err := s.beginArray(); err != nil {
		return nil, err
	}
	var files []File
	for i := 0; ; i++ {
		more, err := s.elem()
		if err != nil {
			return nil, err
		}
		if !more {
			return files, nil
		}
		if i >= MaxFilesPerEvent {
			return nil, fmt.Errorf("more than %d files", MaxFilesPerEvent)
		}
		files = append(files, File{})
		if err := decodeFile(s, fileAt{field, i}, &files[i], full); err != nil {
			return nil, err
		}
	}
}

func decodeFile(s source, at fileAt, f *File, full bool) *ValidationError {
	if err := s.beginObject(); err != nil {
		return wrap(at.String(), err)
	}
	var seen uint32
	for {
		name, ok, err := s.member()
		if err != nil {
			return wrap(at.String(), err)
		}
		if !ok {
			break
		}
		bit := fieldBit(name)
		if bit&fileFields == 0 {
			return invalid(at.field(string(name)), "unknown field (a file has layer, writer_id, path, size_bytes, row_count, chunk_time, min_time, max_time, min, max)")
		}
		if seen&bit != 0 {
			return invalid(at.field(bitName(bit)), "duplicate field")
		}
		seen |= bit
		if err := decodeFileField(s, f, bit); err != nil {
			return wrap(at.field(bitName(bit)), err)
		}
	}
	need := uint32(fLayer | fPath)
	if full {
		need = fileRequired
	}
	if missing := firstIn(need &^ seen); missing != "" {
		return invalid(at.field(missing), "required field is missing")
	}
	return nil
}

// decodePlan reads the plan object of a files.replaced event: kind, id and
// token, each a string, each required, nothing else.
func decodePlan(s source) (*Plan, error) {
	if err := s.beginObject(); err != nil {
		return nil, err
	}
	p := &Plan{}
	var seen [3]bool
	for {
		name, ok, err := s.member()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		var i int
		var dst *string
		var kind string
		switch string(name) {
		case "kind":
			i, dst = 0, &kind
		case "id":
			i, dst = 1, &p.ID
		case "token":
			i, dst = 2, &p.Token
		default:
			return nil, invalid("plan."+string(name), "unknown field (a plan has kind, id and token)")
		}
		field := planFields[i]
		if seen[i] {
			return nil, invalid(field, "duplicate field")
		}
		seen[i] = true
		v, err := s.str()
		if err != nil {
			return nil, wrap(field, err)
		}
		*dst = v
		if i == 0 {
			p.Kind = PlanKind(kind)
		}
	}
	for i, ok := range seen {
		if !ok {
			return nil, invalid(planFields[i], "required field of a plan is missing")
		}
	}
	return p, nil
}

// planFields names the members of a plan, in the order they are reported
// missing.
var planFields = [3]string{"plan.kind", "plan.id", "plan.token"}

func decodeFileField(s source, f *File, bit uint32) (err error) {
	switch bit {
	case fLayer:
		f.Layer, err = s.str()
	case fWriterID:
		f.WriterID, err = s.str()
	case fPath:
		f.Path, err = s.str()
	case fSizeBytes:
		f.SizeBytes, err = s.integer()
	case fRowCount:
		f.RowCount, err = s.integer()
	case fChunkTime:
		f.ChunkTime, err = s.timeValue()
	case fMinTime:
		f.MinTime, err = s.timeValue()
	case fMaxTime:
		f.MaxTime, err = s.timeValue()
	case fMin:
		f.Min, err = s.stats()
	case fMax:
		f.Max, err = s.stats()
	}
	return err
}
